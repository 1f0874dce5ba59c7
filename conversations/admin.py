"""The admin for sessions, runs, messages and steps: read what happened in any session.

The sessions list computes its columns (runs, branches, tokens, cost, last activity, status
counts) in the list's single query: aggregates over one join to runs, plus one correlated subquery
for branches (leaf runs). Runs, messages and steps are history: the admin shows them read-only.
Every staff look at another user's session, run, message or step is written to the audit log.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from audit.admin_mixins import ReadOnlyAdminMixin, StaffViewAuditMixin

from .models import Message, Run, RunStatus, Session, Step
from .selectors import staff

STATUS_SYMBOLS = {
    RunStatus.SUCCEEDED: "✓", RunStatus.FAILED: "✗", RunStatus.CANCELLED: "⊘",
    RunStatus.RUNNING: "▶", RunStatus.QUEUED: "…",
}


class StatusFilter(admin.SimpleListFilter):
    title = "run status"
    parameter_name = "run_status"

    def lookups(self, request, model_admin):
        return RunStatus.choices

    def queryset(self, request, queryset):
        if self.value():  # Exists, not a join: a join would multiply the aggregated rows
            return staff.with_run_status(queryset, self.value())
        return queryset


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        return [(m, m) for m in staff.models_used()]

    def queryset(self, request, queryset):
        if self.value():
            return staff.with_model(queryset, self.value())
        return queryset


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("no", "Not deleted"), ("yes", "Deleted")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return staff.deleted_or_not(queryset, self.value() == "yes")
        return queryset


@admin.register(Session)
class SessionAdmin(StaffViewAuditMixin, admin.ModelAdmin):
    list_display = (
        "title_or_id", "owner", "run_count", "branch_count", "token_total", "cost_usd", "last_activity",
        "status_counts", "created_at", "deleted_at",
    )
    list_select_related = ("owner",)
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter), "created_at", "updated_at", ModelFilter,
                   StatusFilter, DeletedFilter)
    search_fields = ("title",)  # and message text and id: see get_search_results
    date_hierarchy = "created_at"
    fields = ("id", "owner", "title", "created_at", "updated_at", "deleted_at", "active_run", "forked_from_run",
              "default_agent")
    readonly_fields = ("id", "owner", "created_at", "updated_at", "active_run", "forked_from_run")
    raw_id_fields = ("default_agent",)
    ordering = ("-updated_at",)
    list_per_page = 50

    def get_queryset(self, request):
        return staff.annotate_sessions(super().get_queryset(request))

    def get_search_results(self, request, queryset, search_term):
        """Each word (or "quoted phrase") must match the title, the id or a message's text
        (:func:`conversations.selectors.staff.search_sessions_for_staff`)."""
        queryset = staff.search_sessions_for_staff(queryset, search_term)
        return queryset, False

    def has_add_permission(self, request):
        return False  # sessions are created by their owners

    @admin.display(description="title", ordering="title")
    def title_or_id(self, obj):
        return obj.title or f"Session {obj.pk}"

    @admin.display(description="runs", ordering="run_count")
    def run_count(self, obj):
        return obj.run_count

    @admin.display(description="branches", ordering="branch_count")
    def branch_count(self, obj):
        return obj.branch_count

    @admin.display(description="tokens", ordering="token_total")
    def token_total(self, obj):
        return obj.token_total

    @admin.display(description="cost (USD)", ordering="cost")
    def cost_usd(self, obj):
        return "—" if obj.cost is None else f"{obj.cost:.4f}"

    @admin.display(description="last activity", ordering="last_activity")
    def last_activity(self, obj):
        return obj.last_activity

    @admin.display(description="statuses")
    def status_counts(self, obj):
        parts = [(STATUS_SYMBOLS[s], getattr(obj, f"n_{s}"), s) for s in RunStatus.values if getattr(obj, f"n_{s}")]
        return format_html_join(" ", '<span title="{2}">{0}{1}</span>', parts) or "—"

    def audit_owner_id(self, obj):
        return obj.owner_id


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("position", "role", "content", "name", "tool_call_id", "token_count", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyAdminMixin, StaffViewAuditMixin, admin.ModelAdmin):
    """History: visible, never edited or deleted through the admin."""


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("short_id", "session_link", "owner", "status", "model", "depth", "tokens", "finish_reason",
                    "created_at", "latency", "audit_link")
    list_select_related = ("session__owner",)
    list_filter = ("status", "model", "created_at", ("session__owner", admin.RelatedOnlyFieldListFilter),
                   "finish_reason", "error_type")
    search_fields = ("=id", "session__title", "messages__content")
    date_hierarchy = "created_at"
    inlines = [MessageInline]
    readonly_fields = [f.name for f in Run._meta.fields] + ["audit_link"]

    @admin.display(description="run", ordering="id")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="session", ordering="session__title")
    def session_link(self, obj):
        url = reverse("admin:conversations_session_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, obj.session)

    @admin.display(description="owner", ordering="session__owner__username")
    def owner(self, obj):
        return obj.session.owner

    @admin.display(description="tokens")
    def tokens(self, obj):
        return (obj.prompt_tokens or 0) + (obj.completion_tokens or 0)

    @admin.display(description="latency (s)")
    def latency(self, obj):
        value = obj.latency_seconds()
        return "—" if value is None else f"{value:.2f}"

    @admin.display(description="audit")
    def audit_link(self, obj):
        return format_html('<a href="{}">trace</a>', reverse("audit:run", args=[obj.pk]))

    def audit_owner_id(self, obj):
        return obj.session.owner_id


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "position", "role", "excerpt", "token_count", "created_at")
    list_select_related = ("run",)
    list_filter = ("role", "created_at")
    search_fields = ("content", "=run__id")
    readonly_fields = [f.name for f in Message._meta.fields]

    @admin.display(description="content")
    def excerpt(self, obj):
        return obj.content[:80]

    def audit_owner_id(self, obj):
        return staff.owner_id_of_session(obj.run.session_id)


@admin.register(Step)
class StepAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "kind", "name", "status", "started_at", "duration", "prompt_tokens",
                    "completion_tokens")
    list_select_related = ("run",)
    list_filter = ("kind", "status", "started_at")
    search_fields = ("name", "=run__id")
    readonly_fields = [f.name for f in Step._meta.fields]

    @admin.display(description="duration (s)")
    def duration(self, obj):
        value = obj.duration_seconds()
        return "—" if value is None else f"{value:.3f}"

    def audit_owner_id(self, obj):
        return staff.owner_id_of_session(obj.run.session_id)
