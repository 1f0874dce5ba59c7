"""Celery tasks of the archive app: thin, the import itself is :func:`archive.importer.import_job_execute`,
run in a memory-capped child process (:mod:`archive.isolation`)."""

from celery import shared_task

from . import importer, isolation


@shared_task(
    name="archive.import_job",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=3600,
    time_limit=3660,
)
def import_job(job_id: str) -> None:
    """Import an uploaded archive (in a child capped at ARBOR_IMPORT_MEMORY_LIMIT_MB); a redelivered
    task resumes a job whose worker died."""
    isolation.import_job_isolated(job_id)


@shared_task(name="archive.reap_import_jobs", ignore_result=True)
def reap_import_jobs() -> None:
    """Periodic (the maintenance queue): retry once, then fail, import jobs whose worker went silent."""
    importer.reap_stale_import_jobs()
