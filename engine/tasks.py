"""Celery tasks of the engine: thin wrappers that call the engine by id; reliability lives in the
decorator (:func:`core.queue.task`), the names in :data:`core.queue.TASK_MODULES`."""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from conversations.selectors import runs_finished_before
from core import outage, queue
from streams.backends import get_stream

from . import compaction, execute, recovery
from .llm import TransientModelError

log = logging.getLogger(__name__)


@queue.task(queue.EXECUTE_RUN, bind=True, retry_for=(TransientModelError,), retries=3, backoff=1, backoff_max=30,
            time_limit=900, ignore_result=False)
def execute_run(self, run_id: str) -> None:
    try:
        execute.run_execute(run_id=run_id, final_attempt=self.request.retries >= self.max_retries)
    except outage.DATABASE_DOWN as exc:
        # PostgreSQL went away before the model answered (claim, context, a tool's step): the task
        # comes back in DB_RETRY_SECONDS and claims the run again once its heartbeat is stale, so
        # no task fails and the run is answered again from its input (the reaper would, too).
        log.warning("run %s: database unavailable mid-turn; the task tries again in %d s", run_id, DB_RETRY_SECONDS)
        raise self.retry(exc=exc, countdown=DB_RETRY_SECONDS, max_retries=_db_retries()) from exc


# Seconds between deliveries of a run's task while the database is unreachable.
DB_RETRY_SECONDS = 5


def _db_retries() -> int:
    """Deliveries allowed while the database is down: its outage wait, counted in retries."""
    return int(settings.ARBOR_DB_OUTAGE_WAIT_SECONDS // DB_RETRY_SECONDS) + 1


@queue.task(queue.REAP_STALE_RUNS)
def reap_stale_runs() -> dict | None:
    return outage.skip_pass_while_unavailable(recovery.reap_stale_runs, what="reaper")


@queue.task(queue.PRUNE_RUN_EVENTS)
def prune_run_events() -> int | None:
    return outage.skip_pass_while_unavailable(_prune_run_events, what="event pruner")


def _prune_run_events() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.ARBOR_STREAM_RETENTION_SECONDS)
    deleted = get_stream().prune(runs_finished_before(cutoff))
    # Periodic: a line only when it acted (a quiet console).
    log.log(logging.INFO if deleted else logging.DEBUG, "pruned %d stored event(s) of finished runs", deleted)
    return deleted


@queue.task(queue.COMPACT, bind=True, retry_for=(compaction.SummaryError,), retries=3, backoff=2, backoff_max=60,
            time_limit=600)
def compact(self, compaction_id: int) -> None:
    compaction.compaction_execute(compaction_id=compaction_id, final_attempt=self.request.retries >= self.max_retries)
