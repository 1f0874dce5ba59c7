"""Celery tasks of the archive app: thin, the import itself is :func:`archive.importer.import_job_execute`."""

from celery import shared_task

from . import importer


@shared_task(
    name="archive.import_job",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=3600,
    time_limit=3660,
)
def import_job(job_id: str) -> None:
    """Import an uploaded archive; a redelivered task resumes a job whose worker died."""
    importer.import_job_execute(job_id=job_id)
