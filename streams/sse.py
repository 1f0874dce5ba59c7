"""Server-Sent Events for a run (https://html.spec.whatwg.org/multipage/server-sent-events.html).

Each stream event becomes ``id: <event id>`` / ``event: <type>`` / ``data: <payload>``. A client
that reconnects with ``Last-Event-ID`` gets only what came after that id; one that connects without
it gets everything from the start of the run, so a reload mid-stream shows the whole reply so far and
continues. Every reader reads the same stream, so a second tab sees the same reply. A finished run
whose stream has expired is answered from the database (one ``delta`` with the whole answer, then
``done``). A comment line is sent after 15 s of silence to keep proxies from closing the connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from django.http import StreamingHttpResponse
from django.utils.html import escape

from core.asyncdb import db_call, release_request_thread

from .backends import TERMINAL, Event, get_stream
from .source import RunSource

KEEPALIVE_SECONDS = 15.0


def format_json(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(event.data)}\n\n"


def format_html(event: Event) -> str:
    """For the htmx SSE extension: deltas as escaped text; other events carry their JSON."""
    if event.type == "delta":
        payload = escape(event.data.get("text", ""))
    elif event.type == "restart":  # a fresh element for the deltas of the new attempt
        payload = '<span class="stream-text" sse-swap="delta" hx-swap="beforeend"></span>'
    else:
        payload = json.dumps(event.data)
    lines = payload.split("\n")
    data = "".join(f"data: {line}\n" for line in lines)
    return f"id: {event.id}\nevent: {event.type}\n{data}\n"


def _from_database(source: RunSource, run_id) -> list[Event]:
    answer, done = source.ending(run_id)
    events = []
    if answer:
        events.append(Event("db-1", "delta", {"text": answer}))
    events.append(Event("db-2", TERMINAL, done))
    return events


def _run_state(source: RunSource, run_id, finished: bool | None = None) -> tuple[bool, bool | None]:
    """``(finished, whether the run's stream exists)``; ``finished`` is read unless given."""
    return source.finished(run_id) if finished is None else finished, get_stream().exists(run_id)


async def run_events(run_id, last_event_id: str | None, fmt: Callable[[Event], str],
                     source: RunSource, finished: bool | None = None) -> AsyncIterator[str]:
    await release_request_thread()  # the middleware is done: no thread waits with the stream
    stream = get_stream()
    state = db_call(_run_state)
    if finished is not False:  # a run still going (as the view read it) has its stream: no need to ask
        finished, exists = await state(source, run_id, finished)
        if exists is not True and finished:  # expired, or Redis is down: the database has it
            if not (last_event_id or "").startswith("db-"):
                for event in await db_call(_from_database)(source, run_id):
                    yield fmt(event)
            return
    async for event in stream.listen(run_id, last_event_id, KEEPALIVE_SECONDS):
        if event is None:
            # Silence. A finished run whose ``done`` is not in the stream (it expired, or Redis was
            # restarted and lost it) gets its end from the database.
            finished, exists = await state(source, run_id)
            if finished:
                for late in await db_call(_from_database)(source, run_id):
                    if late.type == TERMINAL:
                        yield fmt(late)
                return
            yield ": keepalive\n\n"
            continue
        yield fmt(event)
        if event.type == TERMINAL:
            return


def sse_response(run_id, last_event_id: str | None, source: RunSource, *, html: bool = False,
                 finished: bool | None = None) -> StreamingHttpResponse:
    """The streaming response for a run's events (JSON, or HTML fragments for htmx), for an async
    view that looked the run up with :func:`core.asyncdb.request_call` (which released the
    request's database connection). ``finished``: whether the run had finished when the view read
    it (then the stream's start asks only Redis; None: it reads the run once more). The stream
    keeps no thread busy and holds no connection while it waits: it is an async iterator on the
    event loop, and its reads borrow a connection per read on the bounded pool of
    :func:`core.asyncdb.db_call`. The request's own thread (where Django's
    middleware ran) is let go when the stream starts (:func:`core.asyncdb.release_request_thread`).
    """
    response = StreamingHttpResponse(
        run_events(run_id, last_event_id, format_html if html else format_json, source, finished),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
