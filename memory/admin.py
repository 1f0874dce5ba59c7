"""Admin for agents, compactions (the summaries that stand for older history), memory stores and
message embeddings. Everything but agents is read-only."""

from __future__ import annotations

from django.contrib import admin

from audit.admin_mixins import ReadOnlyAdminMixin, StaffViewAuditMixin

from .models import Agent, Compaction, MemoryStoreSession, MessageEmbedding


@admin.register(Agent)
class AgentAdmin(StaffViewAuditMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "connection", "model", "memory_id", "memory_window_size", "context_window",
                    "created_at")
    list_select_related = ("owner", "connection")
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter), ("connection", admin.RelatedOnlyFieldListFilter),
                   "memory_id", "model")
    search_fields = ("name", "memory_id", "model", "system_prompt")
    raw_id_fields = ("owner", "connection")


@admin.register(Compaction)
class CompactionAdmin(ReadOnlyAdminMixin, StaffViewAuditMixin, admin.ModelAdmin):
    """History: read-only."""

    allow_delete = True

    list_display = ("id", "run", "memory_id", "status", "from_depth", "model", "tokens_before", "tokens_after",
                    "created_at", "finished_at")
    list_select_related = ("run__session",)
    list_filter = ("status", "memory_id", "created_at")
    search_fields = ("summary", "=run__id")

    def audit_owner_id(self, obj):
        """The owner of the compacted run's session (through the relations: no conversations import)."""
        return obj.run.session.owner_id


class _ReadOnly(ReadOnlyAdminMixin, StaffViewAuditMixin, admin.ModelAdmin):
    allow_delete = True


@admin.register(MemoryStoreSession)
class MemoryStoreSessionAdmin(_ReadOnly):
    list_display = ("id", "owner", "memory_id", "session", "created_at")
    list_select_related = ("owner", "session")
    list_filter = ("memory_id", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("memory_id", "owner__username")


@admin.register(MessageEmbedding)
class MessageEmbeddingAdmin(_ReadOnly):
    list_display = ("id", "message", "owner", "model", "dimensions", "created_at")
    list_select_related = ("owner",)
    list_filter = ("model",)
    search_fields = ("=message__id", "owner__username")
    exclude = ("vector",)
