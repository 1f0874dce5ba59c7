"""Database work from async code (async views, SSE streams), at most ``ARBOR_WEB_DB_THREADS`` calls
at once per event loop.

Django's ORM is synchronous: an async view runs it in a thread. :func:`request_call` runs it in the
request's own thread, :func:`db_call` (a stream's reads, outside any request's context) on this
process's pool of ``ARBOR_WEB_DB_THREADS`` threads. Both pass one gate of that many permits (default:
the database pool's size, ``ARBOR_DB_POOL_SIZE``), so however many requests and open streams a web
process serves, no more calls hold a pooled connection at once than the pool has: the others wait
their turn on the event loop (200 runs started at once waited more than the pool's timeout for a
connection and answered 503 before the gate).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


_gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _gated(call):
    """``call`` (an awaitable function) behind the running event loop's gate."""

    async def gated(*args, **kwargs):
        loop = asyncio.get_running_loop()
        gate = _gates.get(loop)
        if gate is None:
            gate = _gates[loop] = asyncio.Semaphore(max(1, settings.ARBOR_WEB_DB_THREADS))
        async with gate:
            return await call(*args, **kwargs)

    return gated


def db_threads() -> ThreadPoolExecutor:
    """This process's pool for :func:`db_call` (created on first use, after any fork)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, settings.ARBOR_WEB_DB_THREADS),
                                       thread_name_prefix="arbor-db")
        return _pool


def db_call(fn):
    """``fn`` as an awaitable run on :func:`db_threads` that releases that thread's database
    connection afterwards.

    Those threads live outside Django's request cycle, so nothing else would close or
    health-check their connections: with a connection pool they would keep their slot forever,
    and after a database restart a broken connection would stay broken in that thread (streams
    answered nothing until the web process restarted). ``close_old_connections`` closes a
    connection that saw an error, or that is older than ``CONN_MAX_AGE`` (at once by default;
    with the pool, closing returns it to the pool).
    """

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return _gated(sync_to_async(call, thread_sensitive=False, executor=db_threads()))


def _release_connection() -> None:
    if not connection.in_atomic_block:  # a test client inside a test transaction keeps it
        connection.close()


def request_call(fn):
    """``fn`` as an awaitable for an async view: run in the request's own thread (Django's
    thread-sensitive ``sync_to_async``, where the request's middleware and authentication read
    too, so a test's transaction is seen), then that thread's database connection is released.

    Under ASGI, Django closes a request's connection only when its response has been sent, which
    for a stream is when the run is done: without the release every open stream would keep a
    pooled connection (and exhaust the pool)."""

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            _release_connection()

    return _gated(sync_to_async(call, thread_sensitive=True))


async def release_request_thread() -> None:
    """Let the request's own thread go for the rest of a streamed response (an SSE stream's first
    step calls this, once the middleware has run).

    Under ASGI, Django gives each request a thread of its own for its sync parts (asgiref's
    per-request ``ThreadSensitiveContext`` executor): the middleware's hooks and
    :func:`request_call` run there. Django keeps it until the response has been sent, so every
    open stream held an idle thread (212 threads in the web process for 200 open streams). Here
    that thread gives its database connection back and ends; a sync call later in the request
    (Django closing the response) gets a fresh thread from asgiref for the moment it needs one.
    A no-op outside such a context (a test client running the request in the test's thread).

    Uses asgiref's ``SyncToAsync.thread_sensitive_context`` / ``context_to_thread_executor``
    (asgiref 3.x, ``asgiref/sync.py``); ``tests/streams/test_crowd.py`` counts the threads.
    """
    try:
        context = SyncToAsync.thread_sensitive_context.get()
    except LookupError:
        return
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is None:
        return
    await asyncio.get_running_loop().run_in_executor(executor, _release_connection)
    executor.shutdown(wait=False)
