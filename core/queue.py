"""Celery tasks by name: the one table of task names, the one decorator that defines a task with
Arbor's reliability options, and enqueueing by name.

Request-side services enqueue work without importing the worker's modules: a task is named by its
registered name (below; a queued message carries it) and sent with :meth:`celery.Celery.send_task`
once the current transaction commits, so a worker never sees a row that is not committed yet.
``send_task`` uses the app's broker settings like ``apply_async`` does
(https://docs.celeryq.dev/en/stable/reference/celery.html#celery.Celery.send_task).

A task's name is ``<package>.<function>`` of the ``<package>/tasks.py`` that defines it
(:data:`TASK_MODULES`); the Celery app imports exactly those modules (``config.celery``), and the
beat schedule (``CELERY_BEAT_SCHEDULE`` in ``config.settings.base``) uses the same names.
"""

from __future__ import annotations

from celery import current_app, shared_task
from django.db import transaction

EXECUTE_RUN = "engine.execute_run"
COMPACT = "engine.compact"
REAP_STALE_RUNS = "engine.reap_stale_runs"
PRUNE_RUN_EVENTS = "engine.prune_run_events"
ADVANCE_VARIANT = "comparisons.advance_variant"
RECORD_JUDGEMENT = "comparisons.record_judgement"
SUITE_CASE_JUDGE = "comparisons.suite_case_judge"
IMPORT_JOB = "archive.import_job"
REAP_IMPORT_JOBS = "archive.reap_import_jobs"
TITLE_SESSION = "conversations.title_session"

# Task name -> the module that defines it.
TASK_MODULES = {
    EXECUTE_RUN: "engine.tasks",
    COMPACT: "engine.tasks",
    REAP_STALE_RUNS: "engine.tasks",
    PRUNE_RUN_EVENTS: "engine.tasks",
    ADVANCE_VARIANT: "comparisons.tasks",
    RECORD_JUDGEMENT: "comparisons.tasks",
    SUITE_CASE_JUDGE: "comparisons.tasks",
    IMPORT_JOB: "archive.tasks",
    REAP_IMPORT_JOBS: "archive.tasks",
    TITLE_SESSION: "conversations.tasks",
}

# The names messages queued before the tasks moved to the engine carry: a worker still runs them
# (the same task registered under its former name too), so an upgrade loses no queued run.
FORMER_NAMES = {
    "conversations.execute_run": EXECUTE_RUN,
    "memory.compact": COMPACT,
    "conversations.reap_stale_runs": REAP_STALE_RUNS,
    "conversations.prune_run_events": PRUNE_RUN_EVENTS,
}


def task(name: str, *, retry_for: tuple[type[BaseException], ...] = (), retries: int = 3, backoff: int = 1,
         backoff_max: int = 30, time_limit: int | None = None, bind: bool = False, ignore_result: bool = True):
    """Define the Celery task ``name`` (a key of :data:`TASK_MODULES`) with Arbor's reliability
    options: acknowledged after it ran (``acks_late``) and requeued when its worker dies
    (``reject_on_worker_lost``), so the task must be idempotent; with ``retry_for``, retried on those
    exceptions up to ``retries`` times with jittered exponential backoff (``backoff`` .. ``backoff_max``
    seconds); with ``time_limit`` (seconds), a soft limit (SoftTimeLimitExceeded inside the task) and
    a hard one 60 s later. The task is also registered under its :data:`FORMER_NAMES`.

    Options: https://docs.celeryq.dev/en/stable/userguide/tasks.html#list-of-options
    """
    if name not in TASK_MODULES:
        raise ValueError(f"{name!r} is not in core.queue.TASK_MODULES")
    options: dict = {"bind": bind, "acks_late": True, "reject_on_worker_lost": True, "ignore_result": ignore_result}
    if retry_for:
        options.update(autoretry_for=retry_for, retry_backoff=backoff, retry_backoff_max=backoff_max,
                       retry_jitter=True, max_retries=retries)
    if time_limit:
        options.update(soft_time_limit=time_limit, time_limit=time_limit + 60)

    def define(fn):
        for former, current in FORMER_NAMES.items():
            if current == name:
                shared_task(name=former, **options)(fn)
        return shared_task(name=name, **options)(fn)

    return define


def send(task_name: str, *args, queue: str) -> None:
    """Send ``task_name(*args)`` to ``queue`` now (JSON-serialisable arguments)."""
    current_app.send_task(task_name, args=args, queue=queue)


def send_on_commit(task_name: str, *args, queue: str) -> None:
    """Send ``task_name(*args)`` to ``queue`` after the current transaction commits (at once
    outside a transaction)."""
    transaction.on_commit(lambda: send(task_name, *args, queue=queue))


def workers_consuming(queue: str, *, timeout: float = 1.0) -> list[str]:
    """Names of the running workers that consume ``queue``, asked over the broker's broadcast
    (``inspect().active_queues()``; works on Redis and the embedded filesystem broker). Waits
    ``timeout`` seconds for replies; an empty list when no worker answered."""
    replies = current_app.control.inspect(timeout=timeout).active_queues() or {}
    return sorted(name for name, queues in replies.items() if any(q.get("name") == queue for q in queues or ()))
