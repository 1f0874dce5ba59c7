"""The watcher beside a streaming model call: the run's heartbeat and its cancellation."""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from conversations.models import Run, RunStatus


class Watcher(threading.Thread):
    """Beside a streaming call: writes the run's heartbeat and notices cancellation.

    Every ``poll`` seconds (default 0.25) it reads the run's status; when it is no longer
    ``running`` (cancelled) it closes the model's HTTP stream, which ends the read in the calling
    thread at once. Every ``settings.ARBOR_HEARTBEAT_SECONDS`` it writes ``heartbeat_at``, which
    the reaper (:mod:`engine.recovery`) reads to find runs whose worker died.
    """

    def __init__(self, run_id, poll: float = 0.25):
        super().__init__(daemon=True, name=f"watch-{run_id}")
        self.run_id = run_id
        self.poll = poll
        self.cancelled = False
        self._stop_event = threading.Event()
        self._stream = None

    def attach(self, stream) -> None:
        """The model's response stream to close on cancellation (closed at once if already cancelled)."""
        self._stream = stream
        if self.cancelled:
            self._close()

    def _close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.response.close()
        except Exception:  # noqa: BLE001 - closing is best effort; the read fails either way
            pass

    def run(self) -> None:
        last_beat = 0.0
        try:
            while not self._stop_event.wait(self.poll):
                status = Run.objects.filter(pk=self.run_id).values_list("status", flat=True).first()
                if status != RunStatus.RUNNING:
                    self.cancelled = status == RunStatus.CANCELLED
                    self._close()
                    return
                if time.monotonic() - last_beat >= settings.ARBOR_HEARTBEAT_SECONDS:
                    Run.objects.filter(pk=self.run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())
                    last_beat = time.monotonic()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)
