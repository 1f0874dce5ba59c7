"""Celery tasks of the archive app: thin, the import itself is :func:`archive.jobs.import_job_execute`,
run in a memory-capped child process (:mod:`archive.isolation`)."""

from core import outage, queue

from . import isolation, jobs


@queue.task(queue.IMPORT_JOB, time_limit=3600)
def import_job(job_id: str) -> None:
    """Import an uploaded archive (in a child capped at ARBOR_IMPORT_MEMORY_LIMIT_MB); a redelivered
    task resumes a job whose worker died."""
    isolation.import_job_isolated(job_id)


@queue.task(queue.REAP_IMPORT_JOBS)
def reap_import_jobs() -> None:
    """Periodic (the maintenance queue): retry once, then fail, import jobs whose worker went silent."""
    outage.skip_pass_while_unavailable(jobs.reap_stale_import_jobs, what="import reaper")
