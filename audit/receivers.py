"""Signal receivers that write the audit log for Django's own models and signals.

* the user model: create and delete (changes made in the admin arrive through ``LogEntry``);
* Django's auth signals: login, logout, failed login (the username tried; never the password);
* ``admin.LogEntry``: every addition, change and deletion made in the admin, with its message.

Our apps' models (sessions, agents, API tokens, imports) are registered by their own apps with
:func:`audit.log.track_changes`, so audit imports no app. Saves made inside an
:func:`audit.log.audited` service are left to that service's own row.
"""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_migrate, post_save

from .groups import sync_auditor_group
from .log import record, track_changes

ADMIN_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


def _user_created(user) -> tuple[str, dict]:
    return "create", {"username": user.get_username()}


def _logged_in(sender, request, user, **kwargs):
    record("auth.login", target=user, actor=user, request=request)


def _logged_out(sender, request, user, **kwargs):
    record("auth.logout", target=user, actor=user, request=request)


def _login_failed(sender, credentials, request=None, **kwargs):
    username = str((credentials or {}).get("username", ""))[:150]
    record("auth.login_failed", request=request, target_type="auth.user", target_id="",
           details={"username": username})


def _log_entry_saved(sender, instance: LogEntry, created, raw=False, **kwargs):
    if not created or raw:
        return
    ct = instance.content_type
    record(
        ADMIN_ACTIONS.get(instance.action_flag, "admin.action"),
        actor=instance.user,
        target_type=f"{ct.app_label}.{ct.model}" if ct else "",
        target_id=instance.object_id or "",
        details={"object": instance.object_repr, "message": instance.get_change_message()},
    )


def connect() -> None:
    """Connect the receivers above (called once from :meth:`audit.apps.AuditConfig.ready`)."""
    track_changes(get_user_model(), action_prefix="user", create=_user_created, change=None,
                  inside_operations=("create",))
    user_logged_in.connect(_logged_in, dispatch_uid="audit.logged_in")
    user_logged_out.connect(_logged_out, dispatch_uid="audit.logged_out")
    user_login_failed.connect(_login_failed, dispatch_uid="audit.login_failed")
    post_save.connect(_log_entry_saved, sender=LogEntry, dispatch_uid="audit.log_entry")
    post_migrate.connect(sync_auditor_group, dispatch_uid="audit.sync_auditor_group")
