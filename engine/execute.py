"""Answering one run in a worker: claim it, build its context, stream the model's answer, run the
tools it asks for, and finalize. The body of the ``engine.execute_run`` task.

One turn, file by file: :func:`run_execute` (here) → :func:`engine.context.build_context` (the
context within the agent's memory settings) → :func:`engine.model_call.stream_answer` (one streamed
call, deltas to :mod:`streams.backends`) → :func:`engine.tools.run_tool` (tool rounds) →
:func:`engine.finalize.finalize` (the answer, usage and status, written once; then
``run_finished`` and :func:`engine.compaction.consider_after_run`).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from connections.models import ConnectionUnusable
from conversations import context_spec as ctx
from conversations.models import Message, Role, Run, RunStatus, Step, StepKind
from core.errors import SERVICE_UNAVAILABLE
from core.redact import mask_secrets
from core.tokens import REPLY_PRIMING, TokenCounter, overhead_for
from streams.backends import RunStream, get_stream

from .context import BuiltContext, ContextOverflow, build_context
from .finalize import ToolRoundLimit, finalize, finish_step
from .llm import TransientModelError, describe_error, is_timeout, is_transient
from .model_call import Outcome, deadline_of, run_status, stream_answer
from .tools import ToolContext, run_tool
from .turn import Totals, Turn

log = logging.getLogger(__name__)


def claim(run_id) -> Run | None:
    """Take the run for this worker: queued → running, or a running run whose worker went silent
    for ``settings.ARBOR_STALE_RUN_SECONDS``. A conditional UPDATE, so of several deliveries of
    one task exactly one executes. ``started_at`` keeps the first attempt's start (the deadline
    counts from it). Returns the run (with its session), or None."""
    now = timezone.now()
    claimed = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=Coalesce("started_at", now), heartbeat_at=now,
        attempts=F("attempts") + 1,
        error_type="", error_message="",
    )
    if not claimed:
        stale = now - timedelta(seconds=settings.ARBOR_STALE_RUN_SECONDS)
        claimed = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, heartbeat_at__lt=stale).update(
            heartbeat_at=now, attempts=F("attempts") + 1,
        )
    if not claimed:
        return None
    return Run.objects.select_related("session", "connection", "agent").get(pk=run_id)


def run_execute(*, run_id: str, final_attempt: bool = True) -> None:
    """Execute a run in a worker: claim, build the context, stream the model's answer into the run's
    stream, run the tools it asks for (a bounded loop: call the model, run the requested tools, send
    their results, until a final answer or ``settings.ARBOR_TOOL_MAX_ROUNDS``), store the answer,
    usage and timings. Every tool call and result is a message of the run and a step of its trace
    (``tool_call`` under the ``llm_call`` that asked for it).

    Idempotent: a second delivery of the same task does nothing unless the first worker died (then
    the answer — tool rounds included — is generated again from the input, and written once).

    Raises TransientModelError (for Celery's retry with backoff) when the endpoint failed
    transiently before any token arrived and ``final_attempt`` is false; every other failure marks
    the run failed with a readable error and keeps its partial text. A run whose connection is
    disabled or deleted fails at once, with a message naming the connection.
    """
    run = claim(run_id)
    if run is None:
        log.info("run %s: not claimable (finished, cancelled or owned by a live worker)", run_id)
        return
    stream = get_stream()
    _begin_attempt(run, stream)
    try:
        turn = Turn.start(run, stream)
    except ConnectionUnusable as exc:
        finalize(run, Outcome(error=exc), Totals(counted=True), None, stream)
        return
    built = _first_context(turn)
    if built is None:
        return
    outcome = _converse(turn, built, final_attempt=final_attempt)
    finalize(run, outcome, turn.totals, turn.llm_step, stream, turn=turn)


def _begin_attempt(run: Run, stream: RunStream) -> None:
    """A new attempt starts again from the input: earlier tool rounds and partial text go, and
    readers that saw deltas get a ``restart`` event."""
    if run.attempts > 1:
        Message.objects.filter(run=run, position__gte=1).delete()
        try:
            saw_deltas = any(e.type == "delta" for e in stream.events(run.pk))
        except SERVICE_UNAVAILABLE:
            saw_deltas = True  # cannot tell (Redis is down): readers start over to be safe
        if saw_deltas:
            stream.publish(run.pk, "restart", {"attempt": run.attempts})
    stream.publish(run.pk, "status", {"status": "running"})


def _first_context(turn: Turn) -> BuiltContext | None:
    """Build the run's context. Its accounting (:meth:`BuiltContext.describe` without its zero
    counts and without what the model call's request already holds, plus the build's
    milliseconds) is kept in ``turn.build`` and stored in the first model call's step: one step
    per turn, not a ``context`` step beside it. On overflow a ``context`` step records the error,
    the run is finalized as failed and None is returned."""
    started = timezone.now()
    try:
        built = _build(turn)
    except ContextOverflow as exc:
        Step.objects.create(run=turn.run, kind=StepKind.CONTEXT, name="build context", started_at=started,
                            status=RunStatus.FAILED, finished_at=timezone.now(),
                            error={"type": "context_overflow", "message": str(exc)})
        finalize(turn.run, Outcome(error=exc), Totals(counted=True), None, turn.stream, turn=turn)
        return None
    took = (timezone.now() - started).total_seconds() * 1000
    turn.build = {**{k: v for k, v in built.describe().items()
                     if v not in (0, None, False, "") and k not in ("context_tokens", "usable_window")},
                  "ms": round(took, 1)}
    return built


def _converse(turn: Turn, built: BuiltContext, *, final_attempt: bool) -> Outcome:
    """The tool loop: call the model; while it asks for tools (and rounds remain), run them and
    call it again with their results. Returns the last call's outcome."""
    rounds = 0
    while True:
        offer = bool(turn.tools) and rounds < settings.ARBOR_TOOL_MAX_ROUNDS
        outcome = _call_model(turn, built, rounds=rounds, offer=offer)
        _retry_if_transient(turn, outcome, final_attempt=final_attempt)
        if not outcome.tool_calls or outcome.error is not None or outcome.cancelled:
            return outcome
        if not offer:
            outcome.error = ToolRoundLimit(
                f"The model still asked for tools after {rounds} rounds (the limit is "
                f"{settings.ARBOR_TOOL_MAX_ROUNDS}).")
            return outcome
        finish_step(turn.llm_step, outcome, RunStatus.SUCCEEDED)
        if _run_tools(turn, outcome):
            return Outcome(cancelled=True)
        rounds += 1
        try:
            built = _build(turn)
        except ContextOverflow as exc:
            return Outcome(error=exc)


def _build(turn: Turn) -> BuiltContext:
    """The run's context from what the turn already read and derived (the path's slice, its memory
    ids, pins and compactions, the counter and budget, :meth:`engine.turn.Turn.start`): no query of
    its own, unless the compaction that applies starts above the slice (then the path once more)."""
    return build_context(turn.run, path=turn.path, counter=turn.counter, budget=turn.budget,
                         memory_ids=turn.memory_ids)


def _call_model(turn: Turn, built: BuiltContext, *, rounds: int, offer: bool) -> Outcome:
    """One model call as an ``llm_call`` step whose request records what was sent (the context
    spec and its SHA-256, never a copy of the messages) and where (the connection's id, name and
    URL; never its key); usage is added to the run's totals."""
    run = turn.run
    request = {
        **turn.endpoint.describe(), "model": run.model, "params": turn.params, "stream": True,
        "context": built.spec.to_json(), "message_count": len(built.messages), "sha256": ctx.digest(built.messages),
        "context_tokens": built.tokens, "usable_window": built.budget.usable, "round": rounds,
        "context_parts": ctx.pack_parts(built.parts()),
    }
    if rounds == 0 and turn.build:
        request["build"] = turn.build  # the context build's accounting (see _first_context)
    tool_args: dict = {}
    if turn.tools:
        tool_args = {"tools": [t.schema() for t in turn.tools]}
        if not offer:
            tool_args["tool_choice"] = "none"
        request["tools"] = [t.name for t in turn.tools]
        request["tool_choice"] = tool_args.get("tool_choice", "auto")
    # Written once, when the call is over (engine.finalize.finish_step): one INSERT, no UPDATE.
    turn.llm_step = Step(run=run, kind=StepKind.LLM_CALL, name=run.model, request=mask_secrets(request),
                         started_at=timezone.now())
    outcome = stream_answer(run, built.messages, {**turn.params, **tool_args}, turn.stream, turn.endpoint)
    _account(outcome, built.messages, turn.totals, turn.counter)
    return outcome


def _retry_if_transient(turn: Turn, outcome: Outcome, *, final_attempt: bool) -> None:
    """Put the run back in the queue and raise TransientModelError (Celery retries with backoff)
    when the call failed transiently before any output and attempts remain: at most one more for
    a timeout (a hung model), none once the run's deadline is near."""
    if outcome.error is None or outcome.text or outcome.tool_calls or outcome.cancelled:
        return
    if not is_transient(outcome.error) or final_attempt:
        return
    if is_timeout(outcome.error) and turn.run.attempts >= 2:
        return  # a model that hung before its first token gets one more try, not three
    if timezone.now() + timedelta(seconds=settings.ARBOR_MODEL_CONNECT_TIMEOUT) >= deadline_of(turn.run):
        return  # no time left for another attempt
    etype, emsg = describe_error(outcome.error, turn.endpoint)
    Run.objects.filter(pk=turn.run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.QUEUED, error_type=etype, error_message=f"Retrying: {emsg}",
    )
    finish_step(turn.llm_step, outcome, RunStatus.FAILED)
    turn.stream.publish(turn.run.pk, "status", {"status": "queued", "retrying": emsg})
    raise TransientModelError(emsg) from outcome.error


def _account(outcome: Outcome, messages: list[dict], totals: Totals, counter: TokenCounter) -> None:
    """Add one call's usage to the run's totals (counted by us when the endpoint sent none) and
    correct the token estimate with what the endpoint reported."""
    if outcome.prompt_tokens is None:
        outcome.prompt_tokens = counter.count_messages(messages)
        totals.counted = True
    elif not counter.exact:
        chars = sum(len(m.get("content") or "") for m in messages)
        overhead = REPLY_PRIMING + sum(overhead_for(m.get("role")) for m in messages)
        counter.observe(chars, outcome.prompt_tokens - overhead)
    if outcome.completion_tokens is None:
        outcome.completion_tokens = counter.count(outcome.text) + (
            counter.count(json.dumps(outcome.tool_calls)) if outcome.tool_calls else 0)
        totals.counted = True
    totals.prompt_tokens += outcome.prompt_tokens
    totals.completion_tokens += outcome.completion_tokens
    totals.first_token_at = totals.first_token_at or outcome.first_token_at


def _add_message(turn: Turn, **fields) -> Message:
    """Write one of the run's own messages at the next position and append it to the path."""
    message = Message.objects.create(run=turn.run, position=turn.position, **fields)
    message.run = turn.run
    turn.path.append(message)
    turn.position += 1
    return message


def _run_tools(turn: Turn, outcome: Outcome) -> bool:
    """Store the assistant's tool-call message, run each call (a ``tool_call`` step under the
    ``llm_call`` step) and store its result as a ``tool`` message. Returns True when the run was
    cancelled meanwhile (unanswered calls then get a note, so no call is left without a result)."""
    calls = [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in outcome.tool_calls
    ]
    calling_position = turn.position
    _add_message(turn, role=Role.ASSISTANT, content=outcome.text, tool_calls=calls,
                 token_count=outcome.completion_tokens)
    for index, call in enumerate(calls):
        if run_status(turn.run.pk) == RunStatus.CANCELLED:
            for rest in calls[index:]:
                _add_message(turn, role=Role.TOOL, name=rest["function"]["name"], tool_call_id=rest["id"],
                             content="Cancelled before this tool ran.")
            return True
        _run_one_tool(turn, call, calling_position)
    return False


def _run_one_tool(turn: Turn, call: dict, calling_position: int) -> None:
    run, stream = turn.run, turn.stream
    name, arguments = call["function"]["name"], call["function"]["arguments"]
    step = Step.objects.create(run=run, parent_step=turn.llm_step, kind=StepKind.TOOL_CALL, name=name,
                               request={"tool_call_id": call["id"], "name": name, "arguments": arguments})
    stream.publish(run.pk, "tool", {"id": call["id"], "name": name, "arguments": arguments})
    result = run_tool(name, arguments, ToolContext(run=run, agent=run.agent, step=step,
                                                   position=calling_position, path=turn.path), turn.tools)
    message = _add_message(turn, role=Role.TOOL, name=name, tool_call_id=call["id"], content=result.content)
    step.status = RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED
    step.finished_at = timezone.now()
    step.response = {"content": result.content, "ok": result.ok, "message_id": message.pk}
    if not result.ok:
        step.error = {"type": "tool_error", "message": result.content}
    step.save()
    stream.publish(run.pk, "tool_result", {"id": call["id"], "name": name, "content": result.content, "ok": result.ok})
