"""Riding out a backing service's outage inside a worker, without failing the task.

Two shapes, both used by the engine's tasks:

- :func:`until_database_answers` — work that must land (a run's final state, once the model has
  answered): retried while PostgreSQL is unreachable, up to ``settings.ARBOR_DB_OUTAGE_WAIT_SECONDS``,
  with kombu's :func:`kombu.utils.functional.retry_over_time` (the loop kombu itself uses to
  reconnect to a broker), this thread's broken connection closed between tries.
- :func:`skip_pass_while_unavailable` — a periodic pass (the reaper, the event pruner): while the
  database or Redis is down it is skipped with one WARNING line instead of raising; the next beat
  runs it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import django.db
from django.conf import settings
from django.db import connection
from kombu.utils.functional import retry_over_time

from .errors import SERVICE_UNAVAILABLE

log = logging.getLogger(__name__)

# What "the database is unreachable" raises through Django (psycopg's errors and the connection
# pool's PoolTimeout arrive wrapped as these two).
DATABASE_DOWN = (django.db.OperationalError, django.db.InterfaceError)

# Seconds between tries: 0.5, 1, then 1 (a final state lands within about a second of the return).
FIRST_WAIT, WAIT_STEP, LONGEST_WAIT = 0.5, 0.5, 1.0


def until_database_answers[T](fn: Callable[[], T], *, what: str, within: float | None = None) -> T:
    """``fn()``, called again while the database is unreachable, for at most ``within`` seconds
    (default ``settings.ARBOR_DB_OUTAGE_WAIT_SECONDS``); then the last error is raised.

    ``fn`` must be safe to repeat: its writes in one transaction of its own. Inside an outer
    transaction (``connection.in_atomic_block``) nothing can be retried, so the error is raised
    at once. ``what`` names the work in the log: one WARNING when the wait starts and one INFO
    line when the database answered again.
    """
    within = settings.ARBOR_DB_OUTAGE_WAIT_SECONDS if within is None else within
    waited = {"tries": 0}

    def before_next_try(exc: BaseException, intervals, retries: int) -> float:
        if connection.in_atomic_block or within <= 0:
            raise exc
        if retries == 0:
            log.warning("%s: database unavailable (%s); trying again for up to %.0f s", what,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, within)
        connection.close()  # the broken connection goes; the next try connects anew
        waited["tries"] = retries + 1
        return next(intervals)

    result = retry_over_time(fn, DATABASE_DOWN, errback=before_next_try, interval_start=FIRST_WAIT,
                             interval_step=WAIT_STEP, interval_max=LONGEST_WAIT, timeout=within)
    if waited["tries"]:
        log.info("%s: database answered again after %d tries", what, waited["tries"])
    return result


def skip_pass_while_unavailable[T](fn: Callable[[], T], *, what: str) -> T | None:
    """``fn()`` (a periodic pass), or None when the database or Redis is down: one WARNING line
    and this thread's connection closed, so the next pass starts on a fresh one. Other errors
    propagate."""
    try:
        return fn()
    except SERVICE_UNAVAILABLE as exc:
        log.warning("%s: skipped, a backing service is unavailable (%s: %s)", what, type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        if not connection.in_atomic_block:
            connection.close()
        return None
