"""The audit log in the admin: filterable, searchable, read-only for everyone, exportable."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse

from .admin_mixins import ReadOnlyAdminMixin
from .export import export_response
from .models import AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "actor_username", "action", "target_type", "target_id", "target_repr", "ip",
                    "method", "path")
    list_filter = ("action", "target_type", "created_at", ("actor", admin.RelatedOnlyFieldListFilter))
    search_fields = ("actor_username", "action", "target_id", "target_repr", "path", "ip", "user_agent")
    actions = ["export_csv", "export_jsonl"]  # no date_hierarchy: its DISTINCT over every row is slow
    list_per_page = 100
    show_full_result_count = False

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return export_response(request, queryset, "csv")

    @admin.action(description="Export selected entries as JSONL", permissions=["view"])
    def export_jsonl(self, request, queryset):
        return export_response(request, queryset, "jsonl")

    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        query = request.GET.copy()
        for name in ("o", "p", "e", "_changelist_filters"):
            query.pop(name, None)
        base = reverse("audit:log_export")
        extra_context["export_links"] = [
            (fmt.upper(), f"{base}?{'&'.join(filter(None, [query.urlencode(), f'format={fmt}']))}")
            for fmt in ("csv", "jsonl")
        ]
        return super().changelist_view(request, extra_context)
