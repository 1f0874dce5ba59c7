"""Celery tasks of the engine: thin wrappers that call the engine by id; reliability lives in the
decorators. Their ``name=``s are the ones queued messages carry (:mod:`core.queue`), unchanged since
they lived in the conversations and memory apps."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from conversations.selectors import runs_finished_before
from streams.backends import get_stream

from . import compaction, execute, recovery
from .llm import TransientModelError

log = logging.getLogger(__name__)


@shared_task(
    name="conversations.execute_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientModelError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=900,
    time_limit=960,
)
def execute_run(self, run_id: str) -> None:
    execute.run_execute(run_id=run_id, final_attempt=self.request.retries >= self.max_retries)


@shared_task(name="conversations.reap_stale_runs", acks_late=True, ignore_result=True)
def reap_stale_runs() -> dict:
    return recovery.reap_stale_runs()


@shared_task(name="conversations.prune_run_events", acks_late=True, ignore_result=True)
def prune_run_events() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.ARBOR_STREAM_RETENTION_SECONDS)
    deleted = get_stream().prune(runs_finished_before(cutoff))
    # Periodic: a line only when it acted (issue 15, quiet console).
    log.log(logging.INFO if deleted else logging.DEBUG, "pruned %d stored event(s) of finished runs", deleted)
    return deleted


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
