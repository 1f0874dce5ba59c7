"""Running one import job in a child process whose memory is capped, so that a file that still
needs too much memory (past the checks of :mod:`archive.source`) fails its own job and nothing else.

The Celery task calls :func:`import_job_isolated`: it starts ``python -m archive.import_child JOB_ID
LIMIT_MB``, which caps its own address space with ``setrlimit(RLIMIT_AS)`` (POSIX; the kernel then
refuses allocations past it, and Python raises MemoryError) before it loads Django, and runs
:func:`archive.jobs.import_job_execute`. The parent waits for it with ``os.wait4`` and gets its
exit status and peak resident memory. A child that dies without finishing its job (a signal, an
allocation that failed outside Python) leaves the job ``running``; the parent fails it with the reason.
``ARBOR_IMPORT_MEMORY_LIMIT_MB = 0`` runs the import in the worker itself.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import ImportJob, JobStatus

log = logging.getLogger(__name__)


@dataclass
class ChildOutcome:
    """How the child ended: its exit code (negative: the signal that killed it) and peak RSS in MiB."""

    exit_code: int
    peak_rss_mb: float


def _database_url() -> str:
    """The URL of the database this process uses (a test database too), for the child."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:"
            f"{db.get('PORT') or 5432}/{db['NAME']}")


def run_child(job_id: str, limit_mb: int) -> ChildOutcome:
    """Run the job in ``python -m archive.isolation`` capped at ``limit_mb`` MiB; wait for it."""
    env = {**os.environ, "DATABASE_URL": _database_url(), "MALLOC_ARENA_MAX": "2",
           "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.base")}
    with tempfile.NamedTemporaryFile("r", prefix="import-peak-", encoding="ascii") as peak:
        child = subprocess.Popen([sys.executable, "-m", "archive.import_child", str(job_id), str(limit_mb), peak.name],
                                 env=env, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        own = peak.read().strip()
    # The child's own VmHWM; if it died before writing it, wait4's figure (which includes this
    # process's memory at the fork, so it is an upper bound). Both in KiB.
    return ChildOutcome(child.returncode, (int(own) if own.isdigit() else usage.ru_maxrss) / 1024)


def import_job_isolated(job_id: str) -> ChildOutcome | None:
    """Import job ``job_id`` in a memory-capped child (None: run here, the limit being 0). A job the
    child left ``running`` is failed with how the child ended."""
    limit = settings.ARBOR_IMPORT_MEMORY_LIMIT_MB
    if limit <= 0:
        # Without a memory cap the import runs in this process: the importer is loaded only then.
        from .jobs import import_job_execute

        import_job_execute(job_id=job_id)
        return None
    outcome = run_child(job_id, limit)
    log.info("import job %s: child exited %s, peak RSS %.0f MiB (limit %s MiB)", job_id, outcome.exit_code,
             outcome.peak_rss_mb, limit)
    how = (f"was stopped by signal {-outcome.exit_code}" if outcome.exit_code < 0
           else f"exited with status {outcome.exit_code}")
    ImportJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, finished_at=timezone.now(),
        error=f"The import process {how} before it finished (peak memory {outcome.peak_rss_mb:.0f} MiB of "
              f"its limit of {limit} MiB, ARBOR_IMPORT_MEMORY_LIMIT_MB); the file was not fully imported.",
    )
    return outcome
