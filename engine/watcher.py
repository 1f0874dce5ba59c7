"""Watching streaming runs: heartbeats and cancellation, one thread per worker process.

Every run a worker process is streaming is registered with the process's :class:`Watchtower`. Its
one thread, every ``poll`` seconds (0.25), reads the status of every registered run in one query;
a run that is no longer ``running`` (the user cancelled it) has its model HTTP stream closed, which
ends the read in the run's own thread at once; so is the stream of a run past its deadline
(``ARBOR_RUN_DEADLINE_SECONDS`` after its first attempt started). Every ``settings.ARBOR_HEARTBEAT_SECONDS`` it writes
``heartbeat_at`` of every registered running run in one UPDATE; the reaper
(:mod:`engine.recovery`) reads it to find runs whose worker died.

So a worker holds one database connection for watching however many runs it streams (a thread
per run, each with its own connection, needed two connections per running run). A database error
(a restart) is logged and the connection dropped; the next poll reconnects.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from conversations.models import Run, RunStatus
from core.lazy import per_process

log = logging.getLogger(__name__)


class Watch:
    """One run's registration: ``cancelled`` once the run was seen cancelled; :meth:`attach` the
    model's response stream so it can be closed then."""

    def __init__(self, run_id, deadline=None):
        self.run_id = run_id
        self.deadline = deadline  # an aware datetime: past it the stream is closed (``expired``)
        self.expired = False
        self.cancelled = False
        self.stopped = False  # no longer running (cancelled, or finished elsewhere)
        self._stream = None
        self._lock = threading.Lock()

    def attach(self, stream) -> None:
        """The model's response stream to close on cancellation (closed at once if already stopped)."""
        with self._lock:
            self._stream = stream
        if self.stopped:
            self._close()

    def stop(self, *, cancelled: bool) -> None:
        self.cancelled = cancelled
        self.stopped = True
        self._close()

    def _close(self) -> None:
        with self._lock:
            stream = self._stream
        close_stream(stream)


def close_stream(stream) -> None:
    """Close a model's SDK stream (``openai.Stream``) from another thread, e.g. on cancellation.

    The socket is shut down first: closing the HTTP response alone does not wake a read blocked
    on a silent socket (a model that sends nothing), which then waited for the read timeout. The
    transport's ``network_stream`` extension gives the socket. Best effort: never raises."""
    if stream is None:
        return
    with contextlib.suppress(Exception):
        network = stream.response.extensions.get("network_stream")
        sock = network.get_extra_info("socket") if network is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        stream.response.close()


class Watchtower:
    """The process's watcher thread and its registered runs (see the module docstring)."""

    def __init__(self, poll: float = 0.25):
        self.poll = poll
        self._watches: dict = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0

    def watch(self, run_id, deadline=None) -> Watch:
        """Register ``run_id`` (starting the thread in this process if needed); past ``deadline``
        (an aware datetime) its stream is closed and the watch marked ``expired``."""
        watch = Watch(run_id, deadline)
        with self._lock:
            self._watches[run_id] = watch
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="arbor-watchtower")
                self._thread.start()
        return watch

    def unwatch(self, watch: Watch) -> None:
        with self._lock:
            if self._watches.get(watch.run_id) is watch:
                del self._watches[watch.run_id]

    def _loop(self) -> None:
        while True:
            time.sleep(self.poll)
            with self._lock:
                watches = dict(self._watches)
            if not watches:
                connection.close()  # idle: give the connection back (a no-op when already closed)
                continue
            try:
                self._check(watches)
            except DatabaseError:
                log.warning("watchtower: database unavailable; retrying", exc_info=True)
                connection.close()
            except Exception:  # the thread must outlive any one failure
                log.exception("watchtower: check failed")

    def _check(self, watches: dict) -> None:
        statuses = dict(Run.objects.filter(pk__in=list(watches)).values_list("pk", "status"))
        running = []
        now = timezone.now()
        for run_id, watch in watches.items():
            status = statuses.get(run_id)
            if status == RunStatus.RUNNING and watch.deadline is not None and now >= watch.deadline:
                watch.expired = True
                watch.stop(cancelled=False)
            elif status == RunStatus.RUNNING:
                running.append(run_id)
            elif not watch.stopped:
                watch.stop(cancelled=status == RunStatus.CANCELLED)
        if running and time.monotonic() - self._last_beat >= settings.ARBOR_HEARTBEAT_SECONDS:
            Run.objects.filter(pk__in=running, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())
            self._last_beat = time.monotonic()


@per_process
def watchtower() -> Watchtower:
    """This process's watchtower (created on first use, so each forked pool child has its own)."""
    return Watchtower()
