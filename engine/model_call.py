"""One streamed model call of a run: deltas to the run's stream, tool-call parts gathered, usage."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
from openai import Stream

from connections.endpoint import Endpoint
from conversations.models import Run, RunStatus
from streams.backends import RunStream

from .deltas import DeltaBatcher
from .llm import FirstTokenTimeout, get_client
from .watcher import close_stream, watchtower


class BrokenStream(Exception):
    """The model's stream ended without a finish reason (cut off, or not a chat-completion stream)."""


class DeadlineExceeded(Exception):
    """The run went past ``ARBOR_RUN_DEADLINE_SECONDS`` (from its first start, all attempts)."""


def deadline_of(run: Run):
    """When ``run`` must be over: the start of its first attempt (time waiting in the queue does
    not count) plus ``settings.ARBOR_RUN_DEADLINE_SECONDS``."""
    return (run.started_at or timezone.now()) + timedelta(seconds=settings.ARBOR_RUN_DEADLINE_SECONDS)


def _deadline_error() -> DeadlineExceeded:
    return DeadlineExceeded(
        f"The model did not finish within the run's deadline of {settings.ARBOR_RUN_DEADLINE_SECONDS:g} s "
        "(ARBOR_RUN_DEADLINE_SECONDS); the text it sent so far is kept.")


def _not_a_stream(response, endpoint: Endpoint) -> BrokenStream:
    kind = response.response.headers.get("content-type", "unknown") if response is not None else "unknown"
    return BrokenStream(f"The model endpoint answered with something that is not a chat-completion stream "
                        f"(content type {kind}); check the base URL of the connection “{endpoint.name}” "
                        "and any proxy in front of it.")


@dataclass
class Outcome:
    """What one model call produced: text, finish reason, usage (None when the endpoint sent
    none), the error that ended it, whether the run was cancelled, and the tool calls asked for
    (``[{"id", "name", "arguments"}]``); ``endpoint``: where the call went (errors name its connection);
    ``first_token_at``: when its first text delta arrived (written with the run's final state)."""

    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: BaseException | None = None
    cancelled: bool = False
    tool_calls: list[dict] = field(default_factory=list)
    endpoint: Endpoint | None = None
    first_token_at: datetime | None = None


def _release_connection() -> None:
    """Give this thread's database connection back (to the pool, or closed) unless a transaction
    is open on it (a test running the engine inside its own transaction)."""
    if not connection.in_atomic_block:
        connection.close()


class FirstTokenClock:
    """The first-token deadline of one call (``ARBOR_FIRST_TOKEN_TIMEOUT`` seconds; 0: none),
    separate from the read timeout between tokens: a timer that, unless :meth:`arrived` is called
    first, closes the response stream (once it is :meth:`attach`-ed; at once if it is attached
    later) and marks the call ``late``. The wait for the answer's headers themselves stays bounded
    by the read timeout (the SDK gives no handle on the request before them)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.late = False
        self._response = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire) if seconds and seconds > 0 else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self.late = True
            response = self._response
        close_stream(response)

    def attach(self, response) -> None:
        with self._lock:
            self._response = response
            late = self.late
        if late:
            close_stream(response)

    def arrived(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def error(self) -> FirstTokenTimeout:
        return FirstTokenTimeout(f"sent no first token within {self.seconds:g} s (ARBOR_FIRST_TOKEN_TIMEOUT).")


def run_status(run_id) -> str | None:
    """The run's status as stored now (one query)."""
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def stream_answer(run: Run, messages: list[dict], params: dict, stream: RunStream, endpoint: Endpoint) -> Outcome:
    """Call the model at ``endpoint`` with ``messages`` and stream its answer: text deltas are
    published to ``stream`` as they arrive (batched by :class:`engine.deltas.DeltaBatcher`: the
    first at once, then at most one event per interval, longer while the process streams many
    runs); the first one's time
    is the outcome's ``first_token_at`` (no write until the run is finalized). The process's watchtower
    writes the heartbeat and closes the HTTP stream when the run is cancelled. This thread's
    database connection is released while it waits on the model (before the call and after the
    first token), so waiting runs hold no connection. Never raises for the model's failure: it is
    the outcome's ``error``."""
    outcome = Outcome(endpoint=endpoint)
    parts: list[str] = []
    calls: dict[int, dict] = {}
    if timezone.now() >= deadline_of(run):
        return Outcome(error=_deadline_error(), endpoint=endpoint)
    tower = watchtower()
    watch = tower.watch(run.pk, deadline_of(run))
    response = None
    chunks = 0
    deltas = _batcher(run, stream)
    clock = FirstTokenClock(settings.ARBOR_FIRST_TOKEN_TIMEOUT)
    try:
        _release_connection()  # nothing is read from the database while the model thinks
        response = open_stream(endpoint, run.model, messages, params)
        watch.attach(response)
        clock.attach(response)
        for chunk in response:
            chunks += 1
            _read_chunk(chunk, outcome, parts, calls, deltas)
            if parts or calls:
                clock.arrived()
        if clock.late and not (parts or calls):
            raise clock.error()
        if not outcome.finish_reason and not watch.stopped:
            raise _not_a_stream(response, endpoint) if chunks == 0 else BrokenStream(
                f"The model's stream from the connection “{endpoint.name}” ended without a finish reason.")
    except BaseException as exc:  # every failure becomes the run's error
        _record_failure(outcome, exc, run=run, watch=watch, clock=clock, silent=not (parts or calls))
    finally:
        clock.arrived()
        tower.unwatch(watch)
        deltas.close()
    if watch.cancelled:
        outcome.cancelled = True
    elif watch.expired and outcome.error is None:
        outcome.error = _deadline_error()
    outcome.text = "".join(parts)
    outcome.tool_calls = [
        {**c, "id": c["id"] or f"call_{run.pk.hex[:8]}_{i}"} for i, c in sorted(calls.items()) if c["name"]
    ]
    return outcome


def open_stream(endpoint: Endpoint, model: str, messages: list[dict], params: dict) -> Stream[object]:
    """``POST /chat/completions`` with ``stream: true`` through the endpoint's ``openai`` client (its
    retries, timeouts and errors: ``openai.APIStatusError`` and the rest, raised before any chunk);
    returns the SDK's stream, whose chunks are the JSON objects the endpoint sent, as dicts
    (``chat.completion.chunk``, https://platform.openai.com/docs/api-reference/chat-streaming).

    Two costs of ``chat.completions.create`` that grow with the context are left out, both through
    the SDK's documented API (``openai`` 2.x): the messages go in ``extra_body``, which the SDK
    sends as given, so its request transform does not walk every message against the message
    TypedDicts (0.2 ms a message measured: 207 ms for 1,000, on messages that are plain JSON
    already); and the chunks are parsed as ``object`` (``with_raw_response`` then
    ``parse(to=Stream[object])``) rather than built into pydantic models (14 ms for 160 chunks)."""
    raw = get_client(endpoint).chat.completions.with_raw_response.create(
        model=model, messages=[], extra_body={"messages": messages}, stream=True,
        stream_options={"include_usage": True}, **params,
    )
    return raw.parse(to=Stream[object])


def _record_failure(outcome: Outcome, exc: BaseException, *, run: Run, watch, clock: FirstTokenClock,
                    silent: bool) -> None:
    """Why the stream stopped, on ``outcome``: the run's deadline, the first-token deadline (when
    ``silent``: no token came), a cancel, else ``exc`` itself. KeyboardInterrupt and SystemExit that
    are none of these are raised again."""
    if watch.expired:
        outcome.error = _deadline_error()
    elif clock.late and silent:
        outcome.error = clock.error()
    elif watch.cancelled or run_status(run.pk) == RunStatus.CANCELLED:
        outcome.cancelled = True
    elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
        raise exc
    else:
        outcome.error = exc


def _batcher(run: Run, stream: RunStream) -> DeltaBatcher:
    """The call's delta batcher; it publishes every delta at once when the stream writes to the
    database inside an open transaction (a test running the engine in its own transaction: the
    flusher thread's connection could not see the run)."""
    in_transaction = not stream.holds_no_connection and connection.in_atomic_block
    return DeltaBatcher(run.pk, stream, interval=0.0 if in_transaction else None)


def _read_chunk(chunk: object, outcome: Outcome, parts: list[str], calls: dict[int, dict],
                deltas: DeltaBatcher) -> None:
    """Fold one ``chat.completion.chunk`` (a dict, see :func:`open_stream`) into the outcome
    (OpenAI streaming format). Anything else is skipped: a stream of such things ends without a
    finish reason, which the caller reports."""
    if not isinstance(chunk, dict):
        return
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        outcome.prompt_tokens = usage.get("prompt_tokens")
        outcome.completion_tokens = usage.get("completion_tokens")
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
    text = delta.get("content")
    if text and isinstance(text, str):
        first = not parts
        parts.append(text)
        deltas.add(text)
        if first:
            outcome.first_token_at = timezone.now()
            if deltas.stream.holds_no_connection:
                _release_connection()  # deltas go to Redis: no database work until the answer is final
    parts_of_calls = delta.get("tool_calls")
    for part in parts_of_calls if isinstance(parts_of_calls, list) else []:
        if isinstance(part, dict):
            _read_tool_call_part(part, calls)
    if choice.get("finish_reason"):
        outcome.finish_reason = choice["finish_reason"]


def _read_tool_call_part(part: dict, calls: dict[int, dict]) -> None:
    """One streamed piece of a tool call: ``{"index", "id"?, "function": {"name"?, "arguments"?}}``."""
    index = part.get("index")
    call = calls.setdefault(index if isinstance(index, int) else 0, {"id": "", "name": "", "arguments": ""})
    if isinstance(part.get("id"), str) and part["id"]:
        call["id"] = part["id"]
    function = part.get("function") if isinstance(part.get("function"), dict) else {}
    for key in ("name", "arguments"):
        if isinstance(function.get(key), str):
            call[key] += function[key]
