"""Run event streams: what a worker publishes while a run executes, read by SSE clients.

An event is ``(event_id, type, data)``: ``type`` is ``status`` (``{"status": ...}``), ``delta``
(``{"text": ...}``), ``restart`` (a redelivered run starts its answer again: clear the text) or
``done`` (``{"status", "error", "usage"}``, the last event of a run). Event ids are opaque strings
that increase within a run; a client resumes after one with SSE's ``Last-Event-ID``.

Two backends, chosen by ``settings.ARBOR_STREAM_URL``:

* ``redis://…`` — one Redis Stream per run (``XADD``/``XREAD BLOCK``): pushes, shared by every
  process, expires ``ARBOR_STREAM_RETENTION_SECONDS`` after the run ends.
* ``db`` — rows of :class:`streams.models.RunEvent`, polled every 25 ms: for the embedded
  single-machine set-up that has no Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from core.asyncdb import db_call
from core.lazy import per_process

from .models import RunEvent

TERMINAL = "done"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict


class RedisRunStream:
    """Run events in Redis Streams, one stream per run (``arbor:run:<run_id>``).

    Publishing survives a Redis outage: an event that cannot be written is kept in this process's
    buffer for its run (in order) and written before the run's next event once Redis answers
    again; the terminal event is retried for up to ``ARBOR_STREAM_PUBLISH_DEADLINE`` seconds. So a
    worker keeps generating through a Redis restart and its readers catch up (readers that lost
    the stream with Redis get ``done`` from the database, see :mod:`streams.sse`).
    """

    holds_no_connection = True  # publishing needs no database connection

    def __init__(self, url: str):
        self.url = url
        self._sync = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._pending: dict[str, list[tuple[str, dict]]] = {}
        self._lock = threading.Lock()  # guards the two dicts; each run's writes hold its own lock
        self._run_locks: dict[str, threading.Lock] = {}
        self._reader_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> {wait: pool}

    @staticmethod
    def key(run_id) -> str:
        return f"arbor:run:{run_id}"

    def publish(self, run_id, type: str, data: dict | None = None) -> str:
        """Append an event; returns its id, or ``""`` when it was buffered (Redis unreachable)."""
        key = self.key(run_id)
        with self._lock:
            self._pending.setdefault(key, []).append((type, data or {}))
            self._run_locks.setdefault(key, threading.Lock())
        deadline = time.monotonic() + (settings.ARBOR_STREAM_PUBLISH_DEADLINE if type == TERMINAL else 0)
        while True:
            try:
                return self._flush(key)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    if type == TERMINAL:
                        self._pending.pop(key, None)
                    log.warning("run stream %s: Redis unreachable (%s); %s", key, exc,
                                "gave up: readers replay the end from the database" if type == TERMINAL
                                else "buffered")
                    return ""
                time.sleep(0.5)

    def _flush(self, key: str) -> str:
        """Write the run's buffered events in order (the last one written is the newest). One run's
        writes hold that run's lock, so other runs' threads write meanwhile."""
        event_id = b""
        with self._lock:
            run_lock = self._run_locks.setdefault(key, threading.Lock())
        with run_lock:
            while True:
                with self._lock:
                    pending = self._pending.get(key)
                    if not pending:
                        self._pending.pop(key, None)
                        break
                    type, data = pending[0]
                event_id = self._sync.xadd(key, {"type": type, "data": json.dumps(data)})
                with self._lock:
                    pending.pop(0)
                if type == TERMINAL:
                    self._sync.expire(key, settings.ARBOR_STREAM_RETENTION_SECONDS)
                    with self._lock:
                        self._run_locks.pop(key, None)
        return event_id.decode()

    def exists(self, run_id) -> bool | None:
        """Whether the run's stream is there; None when Redis cannot be asked right now."""
        try:
            return bool(self._sync.exists(self.key(run_id)))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return None

    def events(self, run_id, after: str | None = None) -> list[Event]:
        """Every event after ``after`` that is there now (no waiting)."""
        rows = self._sync.xrange(self.key(run_id), min=f"({after}" if after else "-", max="+")
        return [self._event(i, f) for i, f in rows]

    @staticmethod
    def _event(event_id, fields) -> Event:
        return Event(event_id.decode(), fields[b"type"].decode(), json.loads(fields[b"data"]))

    async def listen(self, run_id, after: str | None, wait_seconds: float) -> AsyncIterator[Event | None]:
        """Yield events after ``after`` as they arrive; ``None`` after ``wait_seconds`` of silence.

        ``XREAD BLOCK`` waits up to ``wait_seconds`` on the socket, so the client's socket timeout
        must be longer than that: redis-py's asyncio client defaults to ``socket_timeout=5``, which
        cut every stream silent for 5 s (a queued run, a slow first token) with a TimeoutError.
        While Redis is unreachable it keeps trying every second and yields ``None`` each time (the
        reader stays connected and may finish the stream from the database).
        """
        client = aioredis.Redis(connection_pool=self._reader_pool(wait_seconds))
        cursor = after or "0-0"
        try:
            while True:
                try:
                    reply = await client.xread({self.key(run_id): cursor}, block=int(wait_seconds * 1000), count=200)
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    await asyncio.sleep(1.0)
                    yield None
                    continue
                if not reply:
                    yield None
                    continue
                for event_id, fields in reply[0][1]:
                    event = self._event(event_id, fields)
                    cursor = event.id
                    yield event
        finally:
            await client.aclose()

    def _reader_pool(self, wait_seconds: float) -> aioredis.ConnectionPool:
        """The running event loop's pool of reader connections for reads that wait ``wait_seconds``
        (created on first use; one per loop, as an asyncio connection belongs to its loop).

        A stream borrows a connection for each ``XREAD BLOCK`` and gives it back, so a web process
        keeps about as many connections as it has streams waiting at once, and a new stream does
        not connect (nor send redis-py's ``CLIENT SETINFO`` on connecting), as it did with a client
        of its own. A connection that fails is dropped by redis-py; the next read connects again."""
        pools = self._reader_pools.setdefault(asyncio.get_running_loop(), {})  # by the reads' socket timeout
        pool = pools.get(wait_seconds)
        if pool is None:
            pool = pools[wait_seconds] = aioredis.ConnectionPool.from_url(
                self.url, socket_timeout=wait_seconds + 10, socket_connect_timeout=2)
        return pool

    def delete(self, run_id) -> None:
        self._sync.delete(self.key(run_id))

    def prune(self, finished_runs) -> int:
        return 0  # streams expire by themselves (EXPIRE after the terminal event)


class DatabaseRunStream:
    """Run events as rows of ``RunEvent``; readers poll. For the embedded set-up without Redis."""

    poll_seconds = 0.025
    holds_no_connection = False  # every event is a database row

    def publish(self, run_id, type: str, data: dict | None = None) -> str:
        for _ in range(5):
            last = RunEvent.objects.filter(run_id=run_id).aggregate(m=Max("seq"))["m"] or 0
            try:
                with transaction.atomic():
                    RunEvent.objects.create(run_id=run_id, seq=last + 1, type=type, data=data or {})
                return str(last + 1)
            except IntegrityError:  # a concurrent publisher took that seq; take the next one
                continue
        raise RuntimeError(f"could not publish to the stream of run {run_id}")

    def exists(self, run_id) -> bool:
        return RunEvent.objects.filter(run_id=run_id).exists()

    def events(self, run_id, after: str | None = None) -> list[Event]:
        rows = RunEvent.objects.filter(run_id=run_id, seq__gt=_seq(after)).order_by("seq")
        return [Event(str(r.seq), r.type, r.data) for r in rows]

    async def listen(self, run_id, after: str | None, wait_seconds: float) -> AsyncIterator[Event | None]:
        """Yield events after ``after`` as they arrive (polled every ``poll_seconds``); ``None``
        after ``wait_seconds`` of silence, measured on the clock (not by counting sleeps)."""
        cursor = after
        heard = time.monotonic()
        fetch = db_call(self.events)
        while True:
            batch = await fetch(run_id, cursor)
            for event in batch:
                cursor = event.id
                yield event
            if batch:
                heard = time.monotonic()
                continue
            await asyncio.sleep(self.poll_seconds)
            if time.monotonic() - heard >= wait_seconds:
                heard = time.monotonic()
                yield None

    def delete(self, run_id) -> None:
        RunEvent.objects.filter(run_id=run_id).delete()

    def prune(self, finished_runs) -> int:
        """Delete the events of ``finished_runs`` (run ids: a list, or a ``values("pk")`` QuerySet,
        e.g. :func:`conversations.selectors.runs_finished_before`; Redis expires its streams by
        itself). Returns the number of rows deleted."""
        deleted, _ = RunEvent.objects.filter(run_id__in=finished_runs).delete()
        return deleted


RunStream = RedisRunStream | DatabaseRunStream  # what get_stream() returns


def _seq(event_id: str | None) -> int:
    try:
        return int(event_id) if event_id else 0
    except ValueError:
        return 0


@per_process
def _stream_for(url: str) -> RedisRunStream | DatabaseRunStream:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRunStream(url)
    if url == "db":
        return DatabaseRunStream()
    raise ValueError(f"ARBOR_STREAM_URL must be a redis:// URL or 'db', not {url!r}")


def get_stream() -> RedisRunStream | DatabaseRunStream:
    """The configured stream backend (one per URL and process)."""
    return _stream_for(settings.ARBOR_STREAM_URL)
