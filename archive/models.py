"""Import jobs (an uploaded archive being imported by a worker) and where imported sessions came from."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ImportJob(models.Model):
    """One uploaded file and its import: progress while it runs, the report when it is done.

    ``report`` is :meth:`archive.services.ImportReport.as_json`: counts, the imported conversations
    (the first 200), every skipped conversation with its reason (the first 1,000) and the problems
    of the file itself (truncated JSON, broken UTF-8).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="import_jobs")
    filename = models.CharField(max_length=255)
    path = models.CharField(max_length=1000, help_text="Where the upload is stored until the import is done.")
    format = models.CharField(max_length=16, default="auto")
    size_bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    bytes_read = models.PositiveBigIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="importjob_owner_created")]

    def __str__(self) -> str:
        return f"Import of {self.filename} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        return min(99, int(100 * self.bytes_read / self.size_bytes)) if self.size_bytes else 0


class ImportedConversation(models.Model):
    """A session made by an import: its source format and id, so importing the same file again
    skips what is already there (``source_id`` empty when the source had none)."""

    session = models.OneToOneField("conversations.Session", on_delete=models.CASCADE, related_name="import_source")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    source_format = models.CharField(max_length=16)
    source_id = models.CharField(max_length=200, blank=True)
    job = models.ForeignKey(ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    source_where = models.CharField(
        max_length=300, blank=True, help_text="The record's place in the file: a resumed job skips what it did.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["owner", "source_format", "source_id"], name="imported_owner_source")]

    def __str__(self) -> str:
        return f"{self.source_format} {self.source_id or self.source_where}".strip()
