"""Enqueueing Celery tasks by their registered name.

Request-side services enqueue work without importing the worker's modules: a task is named by the
string in its ``@shared_task(name=...)`` (those names are stable: queued messages carry them), and
sent with :meth:`celery.Celery.send_task` once the current transaction commits, so a worker never
sees a row that is not committed yet. ``send_task`` uses the app's broker settings like
``apply_async`` does (https://docs.celeryq.dev/en/stable/reference/celery.html#celery.Celery.send_task).
"""

from __future__ import annotations

from celery import current_app
from django.db import transaction

# The registered names of the tasks other layers enqueue (defined in engine.tasks and the apps' tasks).
EXECUTE_RUN = "conversations.execute_run"
COMPACT = "memory.compact"


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
