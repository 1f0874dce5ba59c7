"""Writes: sessions, runs, forks, cancellation and the execution of a run in a worker.

Functions here are keyword-only, typed and transactional (HackSoft's Django style guide); work for
a worker is enqueued with ``transaction.on_commit`` so a task never sees an uncommitted run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Subquery
from django.utils import timezone

from audit.log import audited
from memory.models import DEFAULT_MEMORY_ID
from memory.tokens import counter_for

from . import context as ctx
from .errors import Conflict, InvalidInput, NotFound
from .llm import TransientModelError, describe_error, get_client, is_transient, mask_secrets
from .models import ACTIVE_STATUSES, Message, Role, Run, RunStatus, Session, Step, StepKind
from .signals import run_finished
from .streams import TERMINAL, get_stream

log = logging.getLogger(__name__)

_ACTIVE = object()  # "continue from the session's active run"
ALLOWED_PARAMS = {"temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty", "frequency_penalty"}


# --- sessions -------------------------------------------------------------------------------------

@transaction.atomic
def session_create(*, owner, title: str = "") -> Session:
    title = (title or "").strip()
    if len(title) > 200:
        raise InvalidInput("title is longer than 200 characters")
    return Session.objects.create(owner=owner, title=title)


@transaction.atomic
def session_rename(*, session: Session, title: str) -> Session:
    title = (title or "").strip()
    if not title or len(title) > 200:
        raise InvalidInput("title must be 1 to 200 characters")
    session.title = title
    session.save(update_fields=["title"])
    return session


@transaction.atomic
def session_delete(*, session: Session) -> Session:
    """Soft-delete: the session disappears for its owner; its runs stay, so forks keep working."""
    session.deleted_at = timezone.now()
    session.save(update_fields=["deleted_at"])
    return session


@transaction.atomic
def session_restore(*, session: Session) -> Session:
    session.deleted_at = None
    session.save(update_fields=["deleted_at"])
    return session


@transaction.atomic
@audited("run.fork")
def session_fork(*, run: Run, owner, title: str = "") -> Session:
    """A new session continuing from ``run``: one row, whatever the depth; nothing is copied.

    Raises Conflict while ``run`` is still queued or running (its answer is not final yet).
    """
    if run.status in ACTIVE_STATUSES:
        raise Conflict("This run has not finished yet; fork it once it has.")
    source_title = run.session.title or "session"
    return Session.objects.create(
        owner=owner,
        title=(title or f"Fork of {source_title}")[:200],
        forked_from_run=run,
        active_run=run,
    )


@transaction.atomic
@audited("session.set_active")
def session_set_active(*, session: Session, run: Run) -> Run:
    """Show the branch through ``run``: the active run becomes the newest leaf below it.

    Raises NotFound when ``run`` is not in the session's tree.
    """
    if not session.can_branch_from(run):
        raise NotFound("That run is not part of this session.")
    leaf = (
        Run.objects.descendant_of(run, inclusive=True).filter(session=session).order_by("-created_at").first()
        if run.session_id == session.pk
        else None
    ) or run
    Session.objects.filter(pk=session.pk).update(active_run=leaf)
    session.active_run = leaf
    return leaf


# --- runs -----------------------------------------------------------------------------------------

def _clean_input(text) -> str:
    if not isinstance(text, str):
        raise InvalidInput("input must be a string")
    if not text.strip():
        raise InvalidInput("input is empty")
    if "\x00" in text:  # PostgreSQL text cannot store it: a clear 400, not a 500
        raise InvalidInput("input contains a NUL character")
    if len(text) > settings.ARBOR_MAX_INPUT_CHARS:
        raise InvalidInput(f"input is longer than {settings.ARBOR_MAX_INPUT_CHARS} characters")
    return text


def _clean_params(params: dict | None) -> dict:
    params = dict(params or {})
    unknown = set(params) - ALLOWED_PARAMS
    if unknown:
        raise InvalidInput(f"unknown parameters: {', '.join(sorted(unknown))}")
    params.setdefault("max_tokens", settings.ARBOR_MAX_OUTPUT_TOKENS)
    return params


@transaction.atomic
@audited("run.start")
def run_start(
    *,
    session: Session,
    input: str,
    parent: Run | None | object = _ACTIVE,
    model: str | None = None,
    params: dict | None = None,
    agent=None,
) -> Run:
    """Create a queued run and enqueue its execution after commit.

    ``agent`` (a :class:`memory.models.Agent`, default: the session's default agent) answers the
    run: its model, parameters and ``memory_id`` apply unless ``model``/``params`` override them.

    ``parent`` omitted: continue from the session's active run (a root run if there is none).
    ``parent=None``: a new root. Otherwise ``parent`` must be in the session's tree and finished.
    Writes a constant number of rows (the run, its input message, the session) at any depth.

    Raises InvalidInput (empty, oversized or non-string input, unknown params), NotFound (parent
    not in this session's tree) and Conflict (parent still running, session deleted).
    """
    text = _clean_input(input)
    clean_params = _clean_params(params)
    if session.is_deleted:
        raise Conflict("This session is deleted.")
    if parent is _ACTIVE:  # read it fresh: another tab or the worker may have moved on
        active = Session.objects.filter(pk=session.pk).values("active_run_id")[:1]
        parent = Run.objects.filter(pk=Subquery(active)).first()
    if parent is not None:
        if not session.can_branch_from(parent):
            raise NotFound("parent_run_id is not a run of this session.")
        if parent.status in ACTIVE_STATUSES:
            raise Conflict("The parent run has not finished yet.")
    if agent is None and session.default_agent_id is not None:
        agent = session.default_agent
    if agent is not None:
        clean_params = {**_clean_params(agent.params), **{k: v for k, v in (params or {}).items()}}
        model = model or agent.model or None
    now = timezone.now()
    run = Run.objects.create(
        session=session,
        parent_run=parent,
        depth=0 if parent is None else parent.depth + 1,
        status=RunStatus.QUEUED,
        model=(model or settings.ARBOR_MODEL)[:200],
        params=clean_params,
        agent=agent,
        memory_id=agent.memory_id if agent is not None else DEFAULT_MEMORY_ID,
        created_at=now,
    )
    Message.objects.create(run=run, position=0, role=Role.USER, content=text, created_at=now)
    fields = {"active_run": run, "updated_at": now}
    if not session.title:
        fields["title"] = " ".join(text.split())[:60]
    Session.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)
    _enqueue(run)
    return run


def _enqueue(run: Run) -> None:
    from .tasks import execute_run

    run_id = str(run.pk)
    transaction.on_commit(lambda: execute_run.apply_async((run_id,), queue=settings.ARBOR_RUN_QUEUE))


def run_input(run: Run) -> str:
    first = run.messages.filter(position=0).values_list("content", flat=True).first()
    return first or ""


@audited("run.regenerate")
def run_regenerate(*, run: Run, session: Session | None = None) -> Run:
    """A sibling of ``run`` with the same input (also how a failed run is retried)."""
    session = session or run.session
    parent = run.parent_run
    return run_start(session=session, input=run_input(run), parent=parent, model=run.model, params=run.params,
                     agent=run.agent)


@audited("run.edit")
def run_edit(*, run: Run, input: str, session: Session | None = None) -> Run:
    """A sibling of ``run`` with new input: an edited user message."""
    session = session or run.session
    return run_start(session=session, input=input, parent=run.parent_run, model=run.model, params=run.params,
                     agent=run.agent)


@transaction.atomic
@audited("run.cancel")
def run_cancel(*, run: Run) -> Run:
    """Cancel a queued or running run. A running generation stops within a second (the worker's
    watcher polls every 0.25 s and closes the model stream); the partial text is kept.

    Raises Conflict when the run has already finished.
    """
    now = timezone.now()
    if Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(status=RunStatus.CANCELLED, finished_at=now):
        transaction.on_commit(lambda: get_stream().publish(run.pk, TERMINAL, {"status": "cancelled", "error": None}))
    elif not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(status=RunStatus.CANCELLED):
        run.refresh_from_db()
        raise Conflict(f"This run has already {run.status}.")
    run.refresh_from_db()
    return run


# --- execution in a worker ------------------------------------------------------------------------

class _Watcher(threading.Thread):
    """Beside a streaming call: writes the run's heartbeat and notices cancellation.

    Every ``poll`` seconds it reads the run's status; when it is no longer ``running`` (cancelled)
    it closes the model's HTTP stream, which ends the read in the main thread at once.
    """

    def __init__(self, run_id, poll: float = 0.25):
        super().__init__(daemon=True, name=f"watch-{run_id}")
        self.run_id = run_id
        self.poll = poll
        self.cancelled = False
        self._stop_event = threading.Event()
        self._stream = None

    def attach(self, stream) -> None:
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


def _claim(run_id) -> Run | None:
    """Take the run for this worker: queued → running, or a running run whose worker went silent.

    A conditional UPDATE, so of several deliveries of one task exactly one executes.
    """
    now = timezone.now()
    claimed = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1,
        error_type="", error_message="",
    )
    if not claimed:
        stale = now - timedelta(seconds=settings.ARBOR_STALE_RUN_SECONDS)
        claimed = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, heartbeat_at__lt=stale).update(
            heartbeat_at=now, attempts=F("attempts") + 1,
        )
    if not claimed:
        return None
    return Run.objects.select_related("session").get(pk=run_id)


@dataclass
class _Outcome:
    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: BaseException | None = None
    cancelled: bool = False
    tool_calls: list[dict] = field(default_factory=list)


@dataclass
class _Totals:
    """Usage of every model call of a run (tool rounds add up); ``counted`` when any was counted by us."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted: bool = False


class ToolRoundLimit(Exception):
    """The model still asked for tools after the last allowed round."""


def build_context(run: Run, *, own_upto: int | None = None, path: list[Message] | None = None):
    """The context of ``run``'s next model call, built by :func:`memory.context.build_context`
    with the run's agent's memory settings (memory id, window, compaction, token budget).

    Returns a :class:`memory.context.BuiltContext` (``.spec``, ``.messages``, ``.tokens``, ...).
    Raises :class:`memory.context.ContextOverflow` when even the fixed part does not fit.
    """
    from memory.context import build_context as build

    return build(run, own_upto=own_upto, path=path)


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
    the run failed with a readable error and keeps its partial text.
    """
    from memory.context import ContextOverflow
    from memory.tools import tools_for

    run = _claim(run_id)
    if run is None:
        log.info("run %s: not claimable (finished, cancelled or owned by a live worker)", run_id)
        return
    stream = get_stream()
    if run.attempts > 1:
        # A new attempt starts again from the input: earlier tool rounds and partial text go.
        Message.objects.filter(run=run, position__gte=1).delete()
        Run.objects.filter(pk=run.pk).update(first_token_at=None)
        if any(e.type == "delta" for e in stream.events(run.pk)):
            stream.publish(run.pk, "restart", {"attempt": run.attempts})
    stream.publish(run.pk, "status", {"status": "running"})

    counter = counter_for(settings.OPENAI_BASE_URL)
    tools = tools_for(run.agent)
    params = {k: v for k, v in run.params.items() if k in ALLOWED_PARAMS}
    path = ctx.path_messages(run)
    position = max((m.position for m in path if m.run_id == run.pk), default=0) + 1

    context_step = Step.objects.create(run=run, kind=StepKind.CONTEXT, name="build context")
    try:
        built = build_context(run, path=path)
    except ContextOverflow as exc:
        context_step.status, context_step.finished_at = RunStatus.FAILED, timezone.now()
        context_step.error = {"type": "context_overflow", "message": str(exc)}
        context_step.save(update_fields=["status", "finished_at", "error"])
        _finalize(run, _Outcome(error=exc), _Totals(counted=True), None, stream, position=position)
        return
    context_step.request = {"context": built.spec.to_json(), "message_count": len(built.messages),
                            "sha256": ctx.digest(built.messages), **built.describe()}
    context_step.status, context_step.finished_at = RunStatus.SUCCEEDED, timezone.now()
    context_step.save(update_fields=["request", "status", "finished_at"])

    totals = _Totals()
    rounds = 0
    while True:
        offer = bool(tools) and rounds < settings.ARBOR_TOOL_MAX_ROUNDS
        request = {
            "base_url": settings.OPENAI_BASE_URL,
            "model": run.model,
            "params": params,
            "stream": True,
            "context": built.spec.to_json(),
            "message_count": len(built.messages),
            "sha256": ctx.digest(built.messages),
            "context_tokens": built.tokens,
            "usable_window": built.budget.usable,
            "round": rounds,
        }
        tool_args: dict = {}
        if tools:
            tool_args = {"tools": [t.schema() for t in tools]}
            if not offer:
                tool_args["tool_choice"] = "none"
            request["tools"] = [t.name for t in tools]
            request["tool_choice"] = tool_args.get("tool_choice", "auto")
        llm_step = Step.objects.create(run=run, kind=StepKind.LLM_CALL, name=run.model, request=mask_secrets(request))
        outcome = _stream_answer(run, built.messages, {**params, **tool_args}, stream)
        _account(outcome, built.messages, totals, counter)

        if outcome.error is not None and not outcome.text and not outcome.tool_calls and not outcome.cancelled \
                and is_transient(outcome.error) and not final_attempt:
            etype, emsg = describe_error(outcome.error)
            Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
                status=RunStatus.QUEUED, error_type=etype, error_message=f"Retrying: {emsg}",
            )
            _finish_step(llm_step, outcome, RunStatus.FAILED)
            stream.publish(run.pk, "status", {"status": "queued", "retrying": emsg})
            raise TransientModelError(emsg) from outcome.error

        if not outcome.tool_calls or outcome.error is not None or outcome.cancelled:
            break
        if not offer:
            outcome.error = ToolRoundLimit(
                f"The model still asked for tools after {rounds} rounds (the limit is "
                f"{settings.ARBOR_TOOL_MAX_ROUNDS}).")
            break
        _finish_step(llm_step, outcome, RunStatus.SUCCEEDED)
        position, cancelled = _run_tools(run, outcome, llm_step, tools, path, position, stream)
        if cancelled:
            outcome = _Outcome(cancelled=True)
            break
        rounds += 1
        try:
            built = build_context(run, path=path)
        except ContextOverflow as exc:
            outcome = _Outcome(error=exc)
            break

    _finalize(run, outcome, totals, llm_step, stream, position=position)


def _account(outcome: _Outcome, messages: list[dict], totals: _Totals, counter) -> None:
    """Add one call's usage to the run's totals (counted by us when the endpoint sent none) and
    correct the token estimate with what the endpoint reported."""
    from memory.tokens import REPLY_PRIMING, overhead_for

    if outcome.prompt_tokens is None:
        outcome.prompt_tokens = counter.count_messages(messages)
        totals.counted = True
    elif not counter.exact:
        chars = sum(len(m.get("content") or "") for m in messages)
        counter.observe(chars, outcome.prompt_tokens - REPLY_PRIMING - sum(overhead_for(m.get("role")) for m in messages))
    if outcome.completion_tokens is None:
        outcome.completion_tokens = counter.count(outcome.text) + (
            counter.count(json.dumps(outcome.tool_calls)) if outcome.tool_calls else 0)
        totals.counted = True
    totals.prompt_tokens += outcome.prompt_tokens
    totals.completion_tokens += outcome.completion_tokens


def _run_tools(run: Run, outcome: _Outcome, llm_step: Step, tools, path: list[Message], position: int,
               stream) -> tuple[int, bool]:
    """Store the assistant's tool-call message, run each call (a ``tool_call`` step under
    ``llm_step``) and store its result as a ``tool`` message. Returns the next free position and
    whether the run was cancelled meanwhile."""
    from memory.tools import ToolContext, run_tool

    calls = [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in outcome.tool_calls
    ]
    asking = Message.objects.create(run=run, position=position, role=Role.ASSISTANT, content=outcome.text,
                                    tool_calls=calls, token_count=outcome.completion_tokens)
    asking.run = run
    path.append(asking)
    calling_position = position
    position += 1
    for call in calls:
        if _status(run.pk) == RunStatus.CANCELLED:
            # Leave no call without a result: the unanswered ones get a note.
            for rest in calls[calls.index(call):]:
                note = Message.objects.create(run=run, position=position, role=Role.TOOL, name=rest["function"]["name"],
                                              tool_call_id=rest["id"], content="Cancelled before this tool ran.")
                note.run = run
                path.append(note)
                position += 1
            return position, True
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        step = Step.objects.create(run=run, parent_step=llm_step, kind=StepKind.TOOL_CALL, name=name,
                                   request={"tool_call_id": call["id"], "name": name, "arguments": arguments})
        stream.publish(run.pk, "tool", {"id": call["id"], "name": name, "arguments": arguments})
        result = run_tool(name, arguments, ToolContext(run=run, agent=run.agent, step=step,
                                                       position=calling_position, path=path), tools)
        message = Message.objects.create(run=run, position=position, role=Role.TOOL, name=name,
                                         tool_call_id=call["id"], content=result.content)
        message.run = run
        path.append(message)
        position += 1
        step.status = RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED
        step.finished_at = timezone.now()
        step.response = {"content": result.content, "ok": result.ok, "message_id": message.pk}
        if not result.ok:
            step.error = {"type": "tool_error", "message": result.content}
        step.save()
        stream.publish(run.pk, "tool_result", {"id": call["id"], "name": name, "content": result.content,
                                               "ok": result.ok})
    return position, False


def _stream_answer(run: Run, messages: list[dict], params: dict, stream) -> _Outcome:
    outcome = _Outcome()
    parts: list[str] = []
    calls: dict[int, dict] = {}
    watcher = _Watcher(run.pk)
    watcher.start()
    try:
        response = get_client().chat.completions.create(
            model=run.model, messages=messages, stream=True, stream_options={"include_usage": True}, **params,
        )
        watcher.attach(response)
        first = True
        for chunk in response:
            if getattr(chunk, "usage", None):
                outcome.prompt_tokens = chunk.usage.prompt_tokens
                outcome.completion_tokens = chunk.usage.completion_tokens
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = choice.delta.content if choice.delta is not None else None
            if delta:
                parts.append(delta)
                stream.publish(run.pk, "delta", {"text": delta})
                if first:
                    first = False
                    Run.objects.filter(pk=run.pk, first_token_at__isnull=True).update(first_token_at=timezone.now())
            for part in (getattr(choice.delta, "tool_calls", None) or []) if choice.delta is not None else []:
                call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                if part.id:
                    call["id"] = part.id
                if part.function is not None:
                    call["name"] += part.function.name or ""
                    call["arguments"] += part.function.arguments or ""
            if choice.finish_reason:
                outcome.finish_reason = choice.finish_reason
        if not outcome.finish_reason and not watcher.cancelled:
            raise BrokenStream("The model's stream ended without a finish reason.")
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the run's error
        if watcher.cancelled or _status(run.pk) == RunStatus.CANCELLED:
            outcome.cancelled = True
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        else:
            outcome.error = exc
    finally:
        watcher.stop()
    if watcher.cancelled:
        outcome.cancelled = True
    outcome.text = "".join(parts)
    outcome.tool_calls = [
        {**c, "id": c["id"] or f"call_{run.pk.hex[:8]}_{i}"} for i, c in sorted(calls.items()) if c["name"]
    ]
    return outcome


class BrokenStream(Exception):
    pass


def _status(run_id) -> str | None:
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def _finish_step(step: Step, outcome: _Outcome, status: str) -> None:
    step.status = status
    step.finished_at = timezone.now()
    step.prompt_tokens = outcome.prompt_tokens
    step.completion_tokens = outcome.completion_tokens
    step.response = {"finish_reason": outcome.finish_reason, "characters": len(outcome.text)}
    if outcome.tool_calls:
        step.response["tool_calls"] = outcome.tool_calls
    if outcome.error is not None:
        etype, emsg = _error_of(outcome.error)
        step.error = {"type": etype, "message": emsg}
    step.save()


def _error_of(exc: BaseException) -> tuple[str, str]:
    from memory.context import ContextOverflow

    if isinstance(exc, BrokenStream):
        return "broken_stream", str(exc)
    if isinstance(exc, ContextOverflow):
        return "context_overflow", str(exc)
    if isinstance(exc, ToolRoundLimit):
        return "tool_round_limit", str(exc)
    return describe_error(exc)


def _finalize(run: Run, outcome: _Outcome, totals: _Totals, llm_step: Step | None, stream, *, position: int = 1
              ) -> None:
    """Write the run's final state: the answer at ``position`` (the next free one after any tool
    traffic), usage summed over its model calls, status; then send ``run_finished`` and ``done``."""
    now = timezone.now()
    if outcome.cancelled:
        status, error = RunStatus.CANCELLED, None
    elif outcome.error is not None:
        status = RunStatus.FAILED
        etype, emsg = _error_of(outcome.error)
        error = {"type": etype, "message": emsg}
    else:
        status, error = RunStatus.SUCCEEDED, None
    counter = counter_for(settings.OPENAI_BASE_URL)
    with transaction.atomic():
        if outcome.text or status == RunStatus.SUCCEEDED:
            Message.objects.update_or_create(
                run=run, position=position,
                defaults={
                    "role": Role.ASSISTANT,
                    "content": outcome.text,
                    "token_count": outcome.completion_tokens,
                    "metadata": {"partial": status != RunStatus.SUCCEEDED},
                },
            )
        Message.objects.filter(run=run, position=0, token_count__isnull=True).update(
            token_count=counter.count(run_input(run)),
        )
        fields = {
            "finished_at": now,
            "prompt_tokens": totals.prompt_tokens if llm_step is not None else None,
            "completion_tokens": totals.completion_tokens if llm_step is not None else None,
            "usage_counted": totals.counted,
            "finish_reason": outcome.finish_reason,
            "error_type": (error or {}).get("type", ""),
            "error_message": (error or {}).get("message", ""),
        }
        # Cancelled by the user while running: the status is already "cancelled"; keep it.
        if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(status=status, **fields):
            Run.objects.filter(pk=run.pk, status=RunStatus.CANCELLED).update(**fields)
            status = _status(run.pk)
        if llm_step is not None:
            _finish_step(llm_step, outcome, status)
    transaction.on_commit(lambda: run_finished.send(sender=Run, run=Run.objects.get(pk=run.pk), status=str(status)))
    stream.publish(run.pk, TERMINAL, {
        "status": str(status),
        "error": error,
        "usage": {"prompt_tokens": fields["prompt_tokens"], "completion_tokens": fields["completion_tokens"]},
    })


def reap_stale_runs(*, max_attempts: int = 3) -> dict:
    """Runs whose worker died: re-enqueue a running run with a stale heartbeat (the next delivery
    reclaims it), or fail it with its partial text after ``max_attempts``; re-enqueue queued runs
    that no worker picked up. Returns counts ``{"requeued", "failed", "queued_again"}``.
    """
    close_old_connections()
    now = timezone.now()
    stale_cutoff = now - timedelta(seconds=settings.ARBOR_STALE_RUN_SECONDS)
    counts = {"requeued": 0, "failed": 0, "queued_again": 0}
    stream = get_stream()
    from .tasks import execute_run

    for run in Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale_cutoff):
        if run.attempts < max_attempts:
            execute_run.apply_async((str(run.pk),), queue=settings.ARBOR_RUN_QUEUE)
            counts["requeued"] += 1
            continue
        partial = _partial_text(stream, run.pk)
        message = "The worker running this reply stopped (it was restarted or killed) and the run was given up."
        with transaction.atomic():
            if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                status=RunStatus.FAILED, finished_at=now, error_type="worker_lost", error_message=message,
            ):
                continue
            if partial:
                Message.objects.update_or_create(
                    run=run, position=_answer_position(run),
                    defaults={"role": Role.ASSISTANT, "content": partial, "metadata": {"partial": True}},
                )
        stream.publish(run.pk, TERMINAL, {"status": "failed", "error": {"type": "worker_lost", "message": message}})
        counts["failed"] += 1
    requeue_cutoff = now - timedelta(seconds=settings.ARBOR_REQUEUE_AFTER_SECONDS)
    for run_id in Run.objects.filter(status=RunStatus.QUEUED, created_at__lt=requeue_cutoff).values_list("pk", flat=True):
        execute_run.apply_async((str(run_id),), queue=settings.ARBOR_RUN_QUEUE)
        counts["queued_again"] += 1
    return counts


def _answer_position(run: Run) -> int:
    """Where a run's (partial) answer goes: after its input and any tool traffic."""
    last = Message.objects.filter(run=run).order_by("-position").values("position", "role", "tool_calls").first()
    if last is None:
        return 1
    if last["role"] == Role.ASSISTANT and not last["tool_calls"]:
        return last["position"]
    return last["position"] + 1


def _partial_text(stream, run_id) -> str:
    parts: list[str] = []
    for event in stream.events(run_id):
        if event.type == "restart":
            parts = []
        elif event.type == "delta":
            parts.append(event.data.get("text", ""))
    return "".join(parts)
