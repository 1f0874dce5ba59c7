"""The database stream backend's rows (:class:`streams.backends.DatabaseRunStream`)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class RunEvent(models.Model):
    """A run's stream event when streams live in the database (embedded mode, no Redis).

    Moved from the conversations app without touching the database: the table keeps its name
    (``conversations_runevent``, migration ``streams.0001`` only takes it over in Django's state).
    The run is referred to by its model's label, so this package imports no app."""

    run = models.ForeignKey("conversations.Run", on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=16)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "conversations_runevent"
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runevent_run_seq")]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq}"
