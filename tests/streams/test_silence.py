"""Streams through long model silence (issue 11): an SSE client stays connected while the model
sends nothing for 30 s before its first token, on both stream backends (Redis Streams and database
rows), and receives every delta and ``done`` on that one connection, with keep-alive comments in
between. Before the fix, redis-py's asyncio client (``socket_timeout=5``) cut the Redis stream
after 5 s of silence without ``done``."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from django.conf import settings

from conversations import services
from tests.support.factories import SessionFactory
from tests.support.processes import start_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

SILENCE = 30


def read_raw_stream(url: str, token: str) -> tuple[list[dict], int, float]:
    """One SSE connection read to its end: ``(events, keep-alive comments, seconds)``; never reconnects."""
    events: list[dict] = []
    keepalives = 0
    started = time.monotonic()
    current: dict = {}
    timeout = httpx.Timeout(connect=5, read=SILENCE + 30, write=5, pool=5)
    with httpx.Client(timeout=timeout) as client, client.stream(
        "GET", url, headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(":"):
                keepalives += 1
            elif line.startswith("event: "):
                current["event"] = line[len("event: "):]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[len("data: "):])
            elif line == "" and current:
                events.append(current)
                current = {}
    return events, keepalives, time.monotonic() - started


@pytest.mark.parametrize("backend", ["redis", "db"])
def test_one_sse_connection_survives_30_s_of_model_silence(backend, llm_server, proc_log_dir, worker_factory,
                                                          user, api_token):
    if backend == "redis":
        if not settings.REDIS_URL:
            pytest.skip("the Redis stream backend needs REDIS_URL (CI and make test set it)")
        stream_url = settings.REDIS_URL
    else:
        stream_url = "db"
    worker_factory(ARBOR_STREAM_URL=stream_url, ARBOR_FIRST_TOKEN_TIMEOUT=str(SILENCE * 3))
    web, base = start_web(llm_server, proc_log_dir, ARBOR_STREAM_URL=stream_url)
    try:
        session = SessionFactory(owner=user)
        run = services.run_start(session=session, input=f"[[first_delay:{SILENCE}]] [[tokens:5]]")
        events, keepalives, seconds = read_raw_stream(f"{base}/api/runs/{run.pk}/events", api_token)
    finally:
        web.stop()
    deltas = [e["data"]["text"] for e in events if e.get("event") == "delta"]
    assert "".join(deltas).split() == ["w0", "w1", "w2", "w3", "w4"], events
    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "succeeded", events[-1]
    assert seconds >= SILENCE, "the model was silent for 30 s: the stream cannot have ended sooner"
    assert keepalives >= 1, "a keep-alive comment is sent every 15 s of silence"
