"""The reaper: runs whose worker died, and queued runs no worker picked up (beat, every 10 s)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from conversations.models import Message, Role, Run, RunStatus
from core import queue
from core.errors import SERVICE_UNAVAILABLE
from streams.backends import TERMINAL, RunStream, get_stream

log = logging.getLogger(__name__)

WORKER_LOST = "The worker running this reply stopped (it was restarted or killed) and the run was given up."


def reap_stale_runs(*, max_attempts: int = 3) -> dict:
    """Runs whose worker died: re-enqueue a running run with a stale heartbeat (the next delivery
    reclaims it), or fail it with its partial text after ``max_attempts``; re-enqueue queued runs
    that no worker picked up. Returns counts ``{"requeued", "failed", "queued_again"}``.

    A heartbeat is judged on time the database was up: while PostgreSQL has been running for less
    than ``ARBOR_STALE_RUN_SECONDS`` (it restarted after an outage, during which no worker could
    write one) no running run is taken as stale, so live workers beat again first.

    Never floods the broker: a run is sent again only once the time since it was last sent (or
    created) exceeds its back-off — ``ARBOR_STALE_RUN_SECONDS`` (running) or
    ``ARBOR_REQUEUE_AFTER_SECONDS`` (queued), doubled with every re-send, at most
    ``ARBOR_REQUEUE_MAX_SECONDS`` — recorded on the run (``requeued_at``, ``requeues``) by a
    conditional UPDATE, so a backlog of N runs puts at most a few messages per run in the queue.
    """
    close_old_connections()
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "queued_again": 0}
    stream = get_stream()
    stale_cutoff = now - timedelta(seconds=settings.ARBOR_STALE_RUN_SECONDS)
    # finished_at IS NULL: what the partial index run_unfinished covers (an unfinished run has none).
    stale = Run.objects.filter(finished_at__isnull=True, status=RunStatus.RUNNING, heartbeat_at__lt=stale_cutoff)
    if _database_started_after(stale_cutoff):
        stale = stale.none()  # heartbeats could not be written while it was down: none is judged yet
    for run in stale:
        if run.attempts >= max_attempts:
            counts["failed"] += _give_up(run, stream, now)
        elif _send_again(run, now, settings.ARBOR_STALE_RUN_SECONDS, since=run.heartbeat_at):
            counts["requeued"] += 1
    requeue_cutoff = now - timedelta(seconds=settings.ARBOR_REQUEUE_AFTER_SECONDS)
    queued = Run.objects.filter(finished_at__isnull=True, status=RunStatus.QUEUED, created_at__lt=requeue_cutoff)
    for run in queued.only("pk", "status", "created_at", "requeued_at", "requeues"):
        if _send_again(run, now, settings.ARBOR_REQUEUE_AFTER_SECONDS, since=run.created_at):
            counts["queued_again"] += 1
    _log_pass(counts)
    return counts


def _database_started_after(moment) -> bool:
    """Whether the database server started after ``moment`` (PostgreSQL's
    ``pg_postmaster_start_time()``; False on other databases, which have no such restart)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()")
        return cursor.fetchone()[0] > moment


def _log_pass(counts: dict) -> None:
    """One line when the pass acted (INFO, a failed run: WARNING); a pass that found nothing is DEBUG."""
    if not any(counts.values()):
        log.debug("reaper: nothing to recover")
        return
    level = logging.WARNING if counts["failed"] else logging.INFO
    log.log(level, "reaper: %d stale running run(s) sent again, %d given up (failed), %d queued run(s) sent again",
            counts["requeued"], counts["failed"], counts["queued_again"])


def _send_again(run: Run, now, base_seconds: float, *, since) -> bool:
    """Send ``run`` to the run queue again if its back-off has passed; True when it was sent."""
    wait = min(base_seconds * 2 ** run.requeues, settings.ARBOR_REQUEUE_MAX_SECONDS)
    last = run.requeued_at or since
    if last is not None and (now - last).total_seconds() < wait:
        return False
    claimed = Run.objects.filter(pk=run.pk, status=run.status, requeues=run.requeues).update(
        requeued_at=now, requeues=F("requeues") + 1,
    )
    if claimed:  # another reaper pass did not get there first
        queue.send(queue.EXECUTE_RUN, str(run.pk), queue=settings.ARBOR_RUN_QUEUE)
    return bool(claimed)


def _give_up(run: Run, stream: RunStream, now) -> bool:
    """Fail a run whose worker died too often, keeping the text streamed so far; False when
    another process changed the run meanwhile."""
    partial = _partial_text(stream, run.pk)
    with transaction.atomic():
        if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
            status=RunStatus.FAILED, finished_at=now, error_type="worker_lost", error_message=WORKER_LOST,
        ):
            return False
        if partial:
            Message.objects.update_or_create(
                run=run, position=_answer_position(run),
                defaults={"role": Role.ASSISTANT, "content": partial, "metadata": {"partial": True}},
            )
    stream.publish(run.pk, TERMINAL, {"status": "failed", "error": {"type": "worker_lost", "message": WORKER_LOST}})
    return True


def _answer_position(run: Run) -> int:
    """Where a run's (partial) answer goes: after its input and any tool traffic."""
    last = Message.objects.filter(run=run).order_by("-position").values("position", "role", "tool_calls").first()
    if last is None:
        return 1
    if last["role"] == Role.ASSISTANT and not last["tool_calls"]:
        return last["position"]
    return last["position"] + 1


def _partial_text(stream: RunStream, run_id) -> str:
    """The text streamed by the run's latest attempt (deltas after the last ``restart``)."""
    parts: list[str] = []
    try:
        events = stream.events(run_id)
    except SERVICE_UNAVAILABLE:  # Redis is down: the partial text is lost, the failure is still recorded
        return ""
    for event in events:
        if event.type == "restart":
            parts = []
        elif event.type == "delta":
            parts.append(event.data.get("text", ""))
    return "".join(parts)
