"""Text deltas written to a run's stream in small batches, not one stream write per token.

A fast model (or a burst of tokens that arrived in one network read) would otherwise cost one
Redis ``XADD`` — or one database row in the embedded set-up — per token: 180 writes for an
800-character answer. A :class:`DeltaBatcher` publishes the first delta at once (time to first
token is not delayed) and then at most one ``delta`` event every ``ARBOR_STREAM_FLUSH_SECONDS``
(default 0.02 s): text that arrives in between is joined and published by this process's flusher
thread when its interval is up, so no text waits longer than about one interval even when the
model goes silent after it. A reader sees the same text in fewer, larger events; the order of
events is kept (one lock per batcher; :meth:`DeltaBatcher.close` publishes the rest before the run
goes on to its terminal event).
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection

from core.lazy import per_process

log = logging.getLogger(__name__)


class DeltaBatcher:
    """One model call's text deltas for ``stream`` (a :class:`streams.backends.RunStream`)."""

    def __init__(self, run_id, stream, interval: float | None = None):
        self.run_id = run_id
        self.stream = stream
        self.interval = settings.ARBOR_STREAM_FLUSH_SECONDS if interval is None else interval
        self.events = 0  # delta events published
        self._parts: list[str] = []
        self._sent_at = float("-inf")
        self._lock = threading.Lock()
        self._closed = False

    def add(self, text: str) -> None:
        """Queue ``text``: published now if the last delta went out at least ``interval`` ago,
        else by the flusher thread within about one interval."""
        with self._lock:
            self._parts.append(text)
            due = time.monotonic() - self._sent_at >= self.interval
            if due:
                self._publish()
        if not due:
            flusher().schedule(self)

    def flush(self) -> None:
        """Publish the queued text, if any (the flusher calls this; so does :meth:`close`)."""
        with self._lock:
            if not self._closed:
                self._publish()

    def close(self) -> None:
        """Publish the rest; later flushes do nothing."""
        with self._lock:
            self._publish()
            self._closed = True

    def _publish(self) -> None:
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self.stream.publish(self.run_id, "delta", {"text": text})
            self._sent_at = time.monotonic()
            self.events += 1


class _Flusher:
    """The process's flusher thread: publishes the queued text of scheduled batchers one interval
    after they were scheduled. Idle, it waits on a condition (no polling) and holds no database
    connection."""

    def __init__(self):
        self._due: dict[int, DeltaBatcher] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, batcher: DeltaBatcher) -> None:
        with self._cond:
            self._due[id(batcher)] = batcher
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="arbor-delta-flusher")
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    if not self._cond.wait(timeout=5.0):
                        connection.close()  # idle: give a database stream's connection back
                batchers = list(self._due.values())
            time.sleep(min(b.interval for b in batchers))
            with self._cond:
                for batcher in batchers:
                    self._due.pop(id(batcher), None)
            for batcher in batchers:
                try:
                    batcher.flush()
                except Exception:  # the thread must outlive any one failure
                    log.exception("delta flusher: run %s: publish failed", batcher.run_id)


@per_process
def flusher() -> _Flusher:
    """This process's flusher (created on first use, so each forked pool child has its own)."""
    return _Flusher()
