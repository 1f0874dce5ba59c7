"""Open streams hold no thread: 100 SSE clients wait on runs that no worker has taken yet (each
stream sends keep-alives), and the web process's threads stay bounded by its pools, not by the
streams: measured 8 idle and 21 with 100 streams open; without core.asyncdb.release_request_thread
each stream kept Django's per-request thread (121)."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from django.conf import settings

from conversations import services
from tests.support.factories import SessionFactory
from tests.support.processes import start_web, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 100


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def _hold_streams(base: str, token: str, run_ids: list, pid: int) -> tuple[int, int]:
    """Open a stream per run, wait until every one has its headers, count the threads; returns
    ``(streams open, threads)``."""
    opened = asyncio.Event()
    count = {"open": 0}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)

    async def hold(client, run_id):
        headers = {"Authorization": f"Bearer {token}"}
        async with client.stream("GET", f"{base}/api/runs/{run_id}/events", headers=headers) as response:
            assert response.status_code == 200
            count["open"] += 1
            if count["open"] == len(run_ids):
                opened.set()
            await asyncio.sleep(3600)  # cancelled below

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60, pool=None)) as client:
        tasks = [asyncio.create_task(hold(client, r)) for r in run_ids]
        await asyncio.wait_for(opened.wait(), 120)
        await asyncio.sleep(1.0)  # every stream is past its first read
        threads = _threads(pid)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return count["open"], threads


def test_open_streams_hold_no_thread(llm_server, proc_log_dir, user, api_token, django_capture_on_commit_callbacks):
    session = SessionFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=False):  # no task: the runs stay queued, the streams open
        run_ids = [services.run_start(session=session, input=f"wait {i}", parent=None).pk for i in range(STREAMS)]
    web, base = start_web(llm_server, proc_log_dir, ARBOR_RUN_QUEUE=settings.ARBOR_RUN_QUEUE)
    try:
        idle = _threads(web.popen.pid)
        wait_for(lambda: idle == _threads(web.popen.pid), timeout=10)
        opened, threads = asyncio.run(_hold_streams(base, api_token, run_ids, web.popen.pid))
    finally:
        web.stop()
    assert opened == STREAMS
    print(f"web process threads: {idle} idle, {threads} with {STREAMS} open streams")
    assert threads - idle <= settings.ARBOR_WEB_DB_THREADS + 10, (idle, threads)
