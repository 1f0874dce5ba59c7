"""Signal receivers that write the audit log without touching other apps' code.

* ``conversations.Session``: create (or fork), rename, delete, restore, other changes, hard delete;
* ``memory.Agent`` and ``accounts.ApiToken``: create, change, delete;
* the user model: create and delete (changes made in the admin arrive through ``LogEntry``);
* Django's auth signals: login, logout, failed login (the username tried; never the password);
* ``admin.LogEntry``: every addition, change and deletion made in the admin, with its message;
* ``archive`` imports, when that app defines an ``ImportJob``-like model (see :func:`_archive_models`).

Saves made inside an :func:`audit.log.audited` service are left to that service's own row.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_migrate, post_save

from .log import in_operation, record

ADMIN_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


def _session_saved(sender, instance, created, update_fields=None, raw=False, **kwargs):
    if raw or in_operation():
        return
    if created:
        if instance.forked_from_run_id:
            record("session.fork", target=instance, details={"run_id": instance.forked_from_run_id})
        else:
            record("session.create", target=instance, details={"title": instance.title})
        return
    fields = set(update_fields or ())
    if "deleted_at" in fields:
        record("session.delete" if instance.deleted_at else "session.restore", target=instance)
    if "title" in fields:
        record("session.rename", target=instance, details={"title": instance.title})
    if not fields:
        record("session.change", target=instance, details={"title": instance.title, "deleted": instance.is_deleted})


def _session_deleted(sender, instance, **kwargs):
    record("session.purge", target=instance, details={"owner_id": instance.owner_id})


def _model_saved(prefix: str):
    def receiver(sender, instance, created, raw=False, update_fields=None, **kwargs):
        if raw or in_operation():
            return
        if not created and update_fields and set(update_fields) <= {"last_used_at", "last_login"}:
            return  # bookkeeping, not a change of state anyone made
        record(f"{prefix}.{'create' if created else 'change'}", target=instance)

    return receiver


def _model_deleted(prefix: str):
    def receiver(sender, instance, **kwargs):
        if in_operation():
            return
        record(f"{prefix}.delete", target=instance)

    return receiver


def _user_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        record("user.create", target=instance, details={"username": instance.get_username()})


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


def _archive_models():
    """Models of the archive app that stand for one import (audited as ``archive.import``)."""
    try:
        config = apps.get_app_config("archive")
    except LookupError:
        return []
    return [m for m in config.get_models() if m.__name__.lower() in {"importjob", "import", "importrun", "importbatch"}]


def _import_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        fields = ("filename", "format", "size_bytes", "owner_id")
        record("archive.import", target=instance,
               details={f: getattr(instance, f) for f in fields if hasattr(instance, f)})


def connect() -> None:
    from accounts.models import ApiToken
    from conversations.models import Session
    from memory.models import Agent

    from .groups import sync_auditor_group

    post_save.connect(_session_saved, sender=Session, dispatch_uid="audit.session_saved")
    post_delete.connect(_session_deleted, sender=Session, dispatch_uid="audit.session_deleted")
    for model, prefix in ((Agent, "agent"), (ApiToken, "api_token")):
        post_save.connect(_model_saved(prefix), sender=model, weak=False, dispatch_uid=f"audit.{prefix}_saved")
        post_delete.connect(_model_deleted(prefix), sender=model, weak=False, dispatch_uid=f"audit.{prefix}_deleted")
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="audit.user_saved")
    post_delete.connect(_model_deleted("user"), sender=user_model, weak=False, dispatch_uid="audit.user_deleted")
    user_logged_in.connect(_logged_in, dispatch_uid="audit.logged_in")
    user_logged_out.connect(_logged_out, dispatch_uid="audit.logged_out")
    user_login_failed.connect(_login_failed, dispatch_uid="audit.login_failed")
    post_save.connect(_log_entry_saved, sender=LogEntry, dispatch_uid="audit.log_entry")
    for model in _archive_models():
        post_save.connect(_import_saved, sender=model, dispatch_uid=f"audit.import_{model.__name__}")
    post_migrate.connect(sync_auditor_group, dispatch_uid="audit.sync_auditor_group")
