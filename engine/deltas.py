"""Text deltas written to a run's stream in small batches, not one stream write per token.

A fast model (or a burst of tokens that arrived in one network read) would otherwise cost one
Redis ``XADD`` — or one database row in the embedded set-up — per token: 180 writes for an
800-character answer. A :class:`DeltaBatcher` publishes the first delta at once (time to first
token is not delayed) and then at most one ``delta`` event per interval: text that arrives in
between is joined and published by this process's flusher thread when its interval is up, so no
text waits longer than about one interval even when the model goes silent after it. A reader sees
the same text in fewer, larger events; the order of events is kept (one lock per batcher;
:meth:`DeltaBatcher.close` publishes the rest before the run goes on to its terminal event).

The interval is ``ARBOR_STREAM_FLUSH_SECONDS`` (0.02 s), or longer when this process streams many
runs at once: together its runs publish at most about ``ARBOR_STREAM_EVENTS_PER_SECOND`` (400)
delta events a second, so each run's interval is the number of runs streaming divided by that
budget, at most :data:`MAX_INTERVAL`. Every event costs the worker, Redis, the web process and the
browser about the same whatever its length: with 100 runs of 10 tokens a second on 64 run threads,
a 30-token answer went out in ~19 events instead of 32 (``XLEN`` of the streams), and the web
process's CPU a run fell from 28.4 to 23.8 ms. Ten runs at once keep the short interval.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection

from core.lazy import per_process

log = logging.getLogger(__name__)

MAX_INTERVAL = 0.5  # seconds: however busy the process, a run's text comes at least twice a second

_open = 0  # batchers of this process not closed yet: the runs streaming now
_open_lock = threading.Lock()


def _interval_for(base: float) -> float:
    """``base``, or the share of this process's event budget one of its streaming runs gets."""
    if base <= 0:
        return base
    share = _open / max(settings.ARBOR_STREAM_EVENTS_PER_SECOND, 1)
    return max(base, min(share, MAX_INTERVAL))


class DeltaBatcher:
    """One model call's text deltas for ``stream`` (a :class:`streams.backends.RunStream`)."""

    def __init__(self, run_id, stream, interval: float | None = None):
        """``interval``: the shortest time between two events, seconds (default
        ``ARBOR_STREAM_FLUSH_SECONDS``; 0: every delta at once); longer while the process streams
        many runs (see the module's docstring)."""
        global _open
        self.run_id = run_id
        self.stream = stream
        self.base_interval = settings.ARBOR_STREAM_FLUSH_SECONDS if interval is None else interval
        self.events = 0  # delta events published
        self._parts: list[str] = []
        self._sent_at = float("-inf")
        self._lock = threading.Lock()
        self._closed = False
        with _open_lock:
            _open += 1

    @property
    def interval(self) -> float:
        """The interval now, seconds (it grows and shrinks with the runs this process streams)."""
        return _interval_for(self.base_interval)

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
        global _open
        with self._lock:
            was_open = not self._closed
            self._closed = True
            try:
                self._publish()
            finally:
                if was_open:
                    with _open_lock:
                        _open -= 1

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
