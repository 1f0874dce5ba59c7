"""Admin for agents and compactions (the summaries that stand for older history)."""

from __future__ import annotations

from django.contrib import admin

from audit.admin_mixins import StaffViewAuditMixin

from .models import Agent, Compaction


@admin.register(Agent)
class AgentAdmin(StaffViewAuditMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "model", "memory_id", "memory_window_size", "context_window", "created_at")
    list_select_related = ("owner",)
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter), "memory_id", "model")
    search_fields = ("name", "memory_id", "model", "system_prompt")
    raw_id_fields = ("owner",)


@admin.register(Compaction)
class CompactionAdmin(StaffViewAuditMixin, admin.ModelAdmin):
    """History: read-only."""

    list_display = ("id", "run", "memory_id", "status", "from_depth", "model", "tokens_before", "tokens_after",
                    "created_at", "finished_at")
    list_select_related = ("run",)
    list_filter = ("status", "memory_id", "created_at")
    search_fields = ("summary", "=run__id")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def audit_owner_id(self, obj):
        from conversations.models import Session

        return Session.objects.filter(pk=obj.run.session_id).values_list("owner_id", flat=True).first()
