"""Celery tasks of the archive app: thin, the import itself is :func:`archive.importer.import_job_execute`."""

from core import queue

from . import importer


@queue.task(queue.IMPORT_JOB, time_limit=3600)
def import_job(job_id: str) -> None:
    """Import an uploaded archive; a redelivered task resumes a job whose worker died."""
    importer.import_job_execute(job_id=job_id)
