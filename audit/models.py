"""The audit log: an append-only record of every state-changing action and of every view of
another user's data by staff.

Rows are only ever inserted. The model refuses ``save()`` of an existing row and ``delete()``; its
queryset refuses ``update()`` and ``delete()``; on PostgreSQL a trigger (migration 0002) makes the
database itself reject UPDATE and DELETE, and on SQLite a trigger rejects UPDATE (a DELETE trigger
would break ``manage.py flush``, which empties SQLite tables with DELETE; PostgreSQL uses TRUNCATE).

The actor is kept twice: as a foreign key without a database constraint (deleting a user must not
touch audit rows) and as the username at the time of the action.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit log row."""


class AuditLogQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("The audit log is append-only: rows cannot be updated.")

    def delete(self):
        raise AppendOnlyError("The audit log is append-only: rows cannot be deleted.")

    _raw_delete = delete


class AuditLog(models.Model):
    """One audited event.

    ``action``: dotted verb, e.g. ``session.create``, ``run.cancel``, ``auth.login``,
    ``admin.change``, ``staff.view``. ``target_type``: ``app_label.model`` of the object acted on;
    ``target_id``: its primary key as text. ``details``: JSON with what else identifies the action
    (the source run of a regenerate, the new title of a rename, the owner of viewed data, ...).
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+", help_text="Empty for actions of the system (workers, management commands).",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP address")
    user_agent = models.CharField(max_length=500, blank=True)
    method = models.CharField(max_length=10, blank=True)
    path = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        # Only the indexes the log's reads use (a row is written on every action, so each index is
        # paid on every turn): the admin's list and the export, newest or oldest first
        # (``created_at``); its filters by action (``auditlog_action``), by actor (the foreign key's
        # index) and by target type (``auditlog_target``, whose prefix it is); a target's own rows
        # (``auditlog_target``). Its text search (``icontains``) reads no index; no pattern
        # (``LIKE 'x%'``) index is kept.
        indexes = [
            models.Index(fields=["action"], name="auditlog_action"),
            models.Index(fields=["target_type", "target_id"], name="auditlog_target"),
        ]

    def __str__(self) -> str:
        who = self.actor_username or "system"
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("The audit log is append-only: rows cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("The audit log is append-only: rows cannot be deleted.")

    def as_dict(self) -> dict:
        """The row as plain JSON-able data (the shape of the JSONL export)."""
        return {
            "id": self.pk,
            "time": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor": self.actor_username,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target": self.target_repr,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "method": self.method,
            "path": self.path,
            "details": self.details,
        }
