"""Logging helpers: a quiet console while nothing happens.

Celery logs every task it receives and finishes at INFO (``celery.worker.strategy``,
``celery.app.trace``) and beat logs every task it sends (``celery.beat``). For the periodic upkeep
(the reaper every 10 s, event pruning) that is a line every few seconds that says nothing; the
tasks log themselves when they act (:mod:`engine.recovery`). :class:`PeriodicTasksAtDebug`, set on
those three loggers by ``LOGGING`` in :mod:`config.settings.base`, turns their INFO records about a
periodic task into DEBUG records, shown only when that logger is enabled for DEBUG
(``ARBOR_LOG_LEVEL=DEBUG``, or ``-l debug``). Failures (ERROR) and every other task are untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping


def periodic_task_names(schedule: Mapping) -> frozenset[str]:
    """Names of a Celery beat schedule's entries and of the tasks they send."""
    names = set(schedule)
    names.update(entry["task"] for entry in schedule.values() if isinstance(entry, Mapping) and "task" in entry)
    return frozenset(names)


class PeriodicTasksAtDebug(logging.Filter):
    """Demote INFO records naming one of ``names`` (:func:`periodic_task_names` of the beat
    schedule) to DEBUG.

    Recognises Celery's records by their arguments: a mapping with ``name`` (task received /
    succeeded) or a tuple containing the entry or task name (beat's "Sending due task %s (%s)").
    """

    def __init__(self, names=()):
        super().__init__()
        self.names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._about_periodic_task(record.args):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def _about_periodic_task(self, args) -> bool:
        if isinstance(args, Mapping):
            return args.get("name") in self.names
        if isinstance(args, tuple):
            return any(isinstance(a, str) and a in self.names for a in args)
        return False
