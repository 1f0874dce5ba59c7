"""Admin mixins: read-only history, and every staff view of another user's data in the audit log."""

from __future__ import annotations

from django.contrib.admin.utils import unquote

from .log import record


class StaffViewAuditMixin:
    """For ModelAdmins of user data. Records ``staff.view`` when a staff member opens the page of an
    object owned by someone else (``audit_owner_id(obj)``), and ``staff.list`` for every changelist
    view (a list shows everyone's rows), with the query string that filtered it."""

    def audit_owner_id(self, obj):  # override: the owner's user id, or None for shared objects
        return getattr(obj, "owner_id", None)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            obj = self.get_object(request, unquote(object_id))
            owner_id = self.audit_owner_id(obj) if obj is not None else None
            if obj is not None and owner_id is not None and owner_id != request.user.pk:
                record("staff.view", target=obj, details={"owner_id": owner_id, "page": "admin"})
        return response

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if request.method == "GET" and response.status_code == 200:
            meta = self.model._meta
            record("staff.list", target_type=f"{meta.app_label}.{meta.model_name}", target_id="",
                   details={"query": request.GET.urlencode()[:500]})
        return response


class ReadOnlyAdminMixin:
    """For ModelAdmins of history (runs, messages, steps, compactions, the audit log): every field
    shown read-only, nothing added or changed; deleting only where ``allow_delete`` says so."""

    allow_delete = False

    def get_readonly_fields(self, request, obj=None):
        excluded = set(self.get_exclude(request, obj) or ())
        return [f.name for f in self.model._meta.fields if f.name not in excluded]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return self.allow_delete and super().has_delete_permission(request, obj)
