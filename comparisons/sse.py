"""A judging's progress as Server-Sent Events for the htmx SSE extension (the judging page swaps each
``progress`` event in; ``done`` closes the stream once every judge call is recorded).

The stream follows the judge calls' own run streams (:mod:`streams.backends`): while a call is out
it waits on that run's stream until the run ends (or 1 s of silence), then reads the judging again
and sends the progress fragment if it changed. Between a call's end and its verdict being recorded
(the ``comparisons.record_judgement`` task) it reads again every 0.2 s. A comment line goes out after
15 s without a change, so proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from django.db import connection
from django.http import StreamingHttpResponse

from conversations.models import ACTIVE_STATUSES
from streams.backends import TERMINAL, db_call, get_stream

from . import insights
from .models import Judging

KEEPALIVE_SECONDS = 15.0
RECORD_POLL_SECONDS = 0.2


def waiting_runs(state: dict) -> list:
    """Ids of the judge calls of ``state`` (:func:`comparisons.insights.judging_state`) whose run is
    still queued or running (no query: the runs came with the judgements)."""
    return [j.run_id for p in state["pairs"] for j in (p["forward"], p["backward"])
            if j is not None and j.recorded_at is None and j.run.status in ACTIVE_STATUSES]


def snapshot(judging: Judging, render: Callable[[dict], str]) -> dict:
    """The judging read now: ``{"html": render(state), "complete", "waiting": [run ids]}``."""
    state = insights.judging_state(judging)
    return {"html": render(state), "complete": state["complete"], "waiting": waiting_runs(state)}


def format_fragment(event: str, seq: int, html: str) -> str:
    """One SSE event whose data is an HTML fragment (a ``data:`` line per line of it)."""
    data = "".join(f"data: {line}\n" for line in html.split("\n"))
    return f"id: {seq}\nevent: {event}\n{data}\n"


async def _until_call_ends(run_id, wait_seconds: float = 1.0) -> None:
    """Return when ``run_id``'s stream has its terminal event or has been silent ``wait_seconds``."""
    async for event in get_stream().listen(run_id, None, wait_seconds):
        if event is None or event.type == TERMINAL:
            return


async def judging_events(judging: Judging, render: Callable[[dict], str]) -> AsyncIterator[str]:
    """``progress`` events (the rendered fragment) as the judging advances, then ``done``."""
    read = db_call(snapshot)
    last, seq, quiet = None, 0, 0.0
    while True:
        state = await read(judging, render)
        if state["html"] != last:
            seq, last, quiet = seq + 1, state["html"], 0.0
            yield format_fragment("progress", seq, state["html"])
        if state["complete"]:
            yield f"id: {seq + 1}\nevent: done\ndata: {{}}\n\n"
            return
        started = asyncio.get_running_loop().time()
        if state["waiting"]:
            await _until_call_ends(state["waiting"][0])
        else:
            await asyncio.sleep(RECORD_POLL_SECONDS)
        quiet += asyncio.get_running_loop().time() - started
        if quiet >= KEEPALIVE_SECONDS:
            quiet = 0.0
            yield ": keepalive\n\n"


def judging_sse_response(judging: Judging, render: Callable[[dict], str]) -> StreamingHttpResponse:
    """The streaming response of :func:`judging_events`. Releases the view thread's database
    connection first (the stream's reads borrow one each, as :func:`streams.sse.sse_response` does)."""
    if not connection.in_atomic_block:  # a test client inside a test transaction keeps it
        connection.close()
    response = StreamingHttpResponse(judging_events(judging, render), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
