"""Running an uploaded file's import job in a worker (:func:`import_job_execute`, called by the
Celery task ``archive.import_job`` in a memory-capped child, :mod:`archive.isolation`), and the
periodic reaper of jobs whose worker went silent.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from core import queue as task_queue

from .importer import import_archive
from .models import ImportJob, JobStatus
from .report import ImportReport
from .source import ArchiveRefused

log = logging.getLogger(__name__)


def _claim(job_id) -> ImportJob | None:
    """queued → running, or take over a running job whose worker went silent (conditional UPDATE)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.ARBOR_IMPORT_STALE_SECONDS)
    jobs = ImportJob.objects.filter(pk=job_id)
    claimed = jobs.filter(Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale)).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1,
    )
    return ImportJob.objects.select_related("owner").get(pk=job_id) if claimed else None


def import_job_execute(*, job_id) -> ImportJob | None:
    """Run an import job in a worker: progress is written to the job as it goes, the report at the
    end; the uploaded file is deleted when the job is done. Does nothing for a job already taken."""
    job = _claim(job_id)
    if job is None:
        log.info("import job %s: not claimable", job_id)
        return None
    last = 0.0

    def progress(report: ImportReport, done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last < 0.3:
            return
        last = time.monotonic()
        ImportJob.objects.filter(pk=job.pk).update(
            bytes_read=done, imported=report.imported, skipped=report.skipped, heartbeat_at=timezone.now(),
        )

    try:
        report = import_archive(path=job.path, owner=job.owner, format=job.format, name=job.filename, job=job,
                                progress=progress)
    except ArchiveRefused as exc:
        log.warning("import job %s: the file was refused: %s", job.pk, exc)
        ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error=_failure(exc)[:2000],
                                                   finished_at=timezone.now())
    except Exception as exc:  # the job records the failure; the page shows it
        log.exception("import job %s failed", job.pk)
        ImportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.FAILED, error=_failure(exc)[:2000], finished_at=timezone.now(),
        )
    else:
        ImportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED, report=report.as_json(), imported=report.imported, skipped=report.skipped,
            bytes_read=job.size_bytes, finished_at=timezone.now(),
        )
    Path(job.path).unlink(missing_ok=True)
    job.refresh_from_db()
    return job


def _failure(exc: Exception) -> str:
    """A job's ``error`` for the exception that ended it."""
    if isinstance(exc, MemoryError):
        return (f"The import needed more memory than its limit of {settings.ARBOR_IMPORT_MEMORY_LIMIT_MB} MiB "
                "(ARBOR_IMPORT_MEMORY_LIMIT_MB); the file was not fully imported.")
    if isinstance(exc, ArchiveRefused):
        return f"The file was refused: {exc}."
    return f"{type(exc).__name__}: {exc}"


MAX_IMPORT_ATTEMPTS = 2  # a job whose worker went silent is retried once, then failed


def reap_stale_import_jobs() -> tuple[int, int]:
    """Import jobs ``running`` with no heartbeat for ARBOR_IMPORT_STALE_SECONDS: sent again (the
    task takes it over) when tried fewer than MAX_IMPORT_ATTEMPTS times, else failed with the
    reason. Returns ``(retried, failed)``."""
    stale = timezone.now() - timedelta(seconds=settings.ARBOR_IMPORT_STALE_SECONDS)
    silent = ImportJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale)
    failed = silent.filter(attempts__gte=MAX_IMPORT_ATTEMPTS).update(
        status=JobStatus.FAILED, finished_at=timezone.now(),
        error=(f"The import stopped: the worker importing it went silent for over "
               f"{settings.ARBOR_IMPORT_STALE_SECONDS} s, {MAX_IMPORT_ATTEMPTS} times (it may have run out of "
               "memory or been restarted); the file was not fully imported."),
    )
    retried = 0
    for job_id in silent.filter(attempts__lt=MAX_IMPORT_ATTEMPTS).values_list("pk", flat=True):
        task_queue.send(task_queue.IMPORT_JOB, str(job_id), queue=settings.ARBOR_IMPORT_QUEUE)
        retried += 1
    if retried or failed:
        log.warning("import jobs gone silent: %s sent again, %s failed", retried, failed)
    return retried, failed
