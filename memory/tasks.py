"""Celery tasks of the memory app: thin wrappers; the work is in :mod:`memory.compaction`."""

from celery import shared_task

from . import compaction


@shared_task(
    name="memory.compact",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(compaction.SummaryError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
    ignore_result=True,
)
def compact(self, compaction_id: int) -> None:
    compaction.compaction_execute(compaction_id=compaction_id, final_attempt=self.request.retries >= self.max_retries)
