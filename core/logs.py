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


class AccessLines(logging.Filter):
    """The web server's access lines (uvicorn's ``uvicorn.access`` records, whose arguments are
    ``(client, method, path, http version, status)``): lines for a path under one of ``skip``
    (static files, the favicon) are dropped; the others are logged at ``level`` (a level name,
    ``ARBOR_ACCESS_LOG_LEVEL``), so ``DEBUG`` keeps page and API lines out of an INFO console."""

    def __init__(self, skip=(), level: str = "INFO"):
        super().__init__()
        self.skip = tuple(skip)
        self.level = logging.getLevelName(str(level).upper())
        if not isinstance(self.level, int):
            raise ValueError(f"ARBOR_ACCESS_LOG_LEVEL: {level!r} is not a logging level")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[2]) if len(args) > 2 else ""
        if path.split("?", 1)[0].startswith(self.skip):
            return False
        record.levelno, record.levelname = self.level, logging.getLevelName(self.level)
        return logging.getLogger(record.name).isEnabledFor(self.level)
