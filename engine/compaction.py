"""Compaction: keeping a branch's history inside the context window, per memory id.

**When.** After each run (:func:`consider_after_run`, called by :mod:`engine.finalize` in the worker) the
context a child of that run would start from is measured: tokens ÷ usable window (context window −
reserved output tokens). Above the policy's ``threshold`` (default 0.8,
``settings.ARBOR_COMPACTION_THRESHOLD``) a :class:`~memory.models.Compaction` is created for that run
and memory id, and the Celery task ``engine.compact`` does the work — never a web request.

**What.** The policy's strategies run in order until utilisation is at or below ``target``
(default: half the threshold):

- ``{"type": "keep_last_turns", "turns": N}`` — turns older than the newest N are left out;
- ``{"type": "tool_results", "max_chars": C, "action": "truncate" | "drop"}`` — tool results longer
  than C characters are cut to C (or replaced by a one-line note); the call/result pair stays intact;
- ``{"type": "summarize", "keep_recent_turns": K, "max_tokens": T, "model": M, "prompt": P,
  "temperature": 0.0, "connection": C}`` — turns older than the newest K are summarised by the LLM
  (model M, default the agent's model) into at most T tokens, on the connection named C (among
  those the agent's owner may use), default the run's own connection (its agent's).
  Incremental: the model gets the previous summary and only the turns after it.

A policy is the agent's ``compaction`` JSON: ``{"enabled": true, "threshold": 0.8, "target": 0.4,
"strategies": [...]}``; omitted keys take the defaults in :data:`memory.policy.DEFAULT_STRATEGIES`
(parsed and checked by :func:`memory.policy.parse_policy`).

**Where.** A compaction is attached to the run whose ancestors it covers; descendants of that run
use it once it is ready (:mod:`engine.context`), other branches never see it, and a run that starts
while it is pending falls back to truncation by the budget. Every compaction is recorded (strategy,
utilisation before/after, replaced messages, summary, model, usage) and written as a Step of kind
``compaction`` in its run's trace.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from connections.endpoint import Endpoint
from conversations import context_spec as ctx
from conversations.models import Message, Role, Run, RunStatus, Step, StepKind
from core import queue
from core.tokens import TokenCounter
from memory.models import Agent, Compaction, CompactionStatus, SharedSummary
from memory.policy import Budget, budget_for, parse_policy, policy_for

from .context import latest_compactions, measure_next, pinned_ids, run_counter
from .llm import describe_error, get_client, is_transient, summariser_endpoint

log = logging.getLogger(__name__)

EARLIER_LABEL = "Earlier (summary of what came before): "
STALE_SECONDS = 600  # a pending/running compaction older than this no longer blocks a new one


class SummaryError(Exception):
    """The summariser's endpoint failed transiently (the task retries). The message names the
    connection; ``etype`` is the kind of failure (:func:`engine.llm.describe_error`)."""

    def __init__(self, message: str, etype: str = "summary_error"):
        super().__init__(message)
        self.etype = etype


class SummaryFailed(Exception):
    """The summariser's endpoint failed for good: ``(etype, message)``, the message naming the connection."""

    def __init__(self, etype: str, message: str):
        super().__init__(message)
        self.etype = etype


# --- measuring after a run ----------------------------------------------------------------------

def consider_after_run(run: Run, status: str, **measured_with) -> None:
    """Called by the engine once a run's final state is committed (and ``done`` published):
    measure, and enqueue a compaction if needed. ``measured_with``: what the turn already read
    (``path`` through the answer, ``memory_ids``, ``counter``, ``budget``; see
    :func:`compaction_consider`). Never raises: a measuring failure must not break the run's worker."""
    try:
        compaction_consider(run=run, status=status, **measured_with)
    except Exception:  # logged; the run itself is already final
        log.exception("compaction: measuring after run %s failed", run.pk)


def compaction_consider(*, run: Run, status: str = RunStatus.SUCCEEDED, counter: TokenCounter | None = None,
                        path: list | None = None, memory_ids: dict | None = None, budget: Budget | None = None,
                        ) -> Compaction | None:
    """Measure the context a child of ``run`` would start from; when its utilisation exceeds the
    policy's threshold, create a pending :class:`Compaction` for ``run`` and enqueue the task after
    commit. Returns the compaction created, or None (under the threshold, compaction disabled, the
    run did not succeed, a window of 0, or another compaction on this path still in progress).
    ``path`` (the messages from the root through ``run``'s last), ``memory_ids``, ``counter`` and
    ``budget``: reused when given (the engine passes its turn's), else read. Under the threshold no
    query when ``path`` is the turn's slice (its pins and compactions, read at the turn's start,
    are reused), else two (pins, compactions on the path); over it, one to see whether a compaction
    on the path is already under way, then the compactions are read again and measured with (one
    may have become ready during the turn), then two more to create one.
    """
    if status != RunStatus.SUCCEEDED:
        return None
    agent = run.agent
    policy = parse_policy(run.params["compaction"]) if run.params.get("compaction") else policy_for(agent)
    if not policy.enabled or not policy.strategies or (agent is not None and agent.memory_window_size == 0):
        return None
    measured = measure_next(run, agent=agent, counter=counter, path=path, memory_ids=memory_ids, budget=budget)
    if measured.full_utilisation <= policy.threshold or _busy(run):
        return None
    if isinstance(path, ctx.PathSlice) and path.compactions is not None:
        # Measured with the compactions read at the turn's start: one may have become ready since.
        fresh = latest_compactions(run, run.memory_id, inclusive=True)
        measured = measure_next(run, agent=agent, counter=counter, path=path, memory_ids=memory_ids,
                                budget=budget, compaction=fresh[0])
        if measured.full_utilisation <= policy.threshold:
            return None
    with transaction.atomic():
        compaction, created = Compaction.objects.get_or_create(
            run=run, memory_id=run.memory_id,
            defaults={
                "policy": policy.to_json(), "usable_window": measured.budget.usable,
                "tokens_before": measured.fixed_tokens + measured.history_tokens,
                "utilisation_before": round(measured.full_utilisation, 4),
            },
        )
        if created:
            _enqueue(compaction)
    return compaction if created else None


def _busy(run: Run) -> bool:
    """Whether a compaction for ``run``'s memory id on its path (``run`` included) is pending or
    running and younger than ``STALE_SECONDS`` (one query)."""
    recent = timezone.now() - timedelta(seconds=STALE_SECONDS)
    return Compaction.objects.filter(
        run__in=Run.objects.ancestor_of(run, inclusive=True), memory_id=run.memory_id,
        status__in=(CompactionStatus.PENDING, CompactionStatus.RUNNING), created_at__gte=recent,
    ).exists()


def _enqueue(compaction: Compaction) -> None:
    queue.send_on_commit(queue.COMPACT, compaction.pk,
                         queue=settings.ARBOR_COMPACTION_QUEUE or settings.ARBOR_RUN_QUEUE)


# --- the compaction task's service --------------------------------------------------------------

def _claim(compaction_id: int) -> Compaction | None:
    now = timezone.now()
    claimed = Compaction.objects.filter(pk=compaction_id, status=CompactionStatus.PENDING).update(
        status=CompactionStatus.RUNNING, started_at=now, attempts=F("attempts") + 1,
    )
    if not claimed:  # a worker died holding it
        stale = now - timedelta(seconds=STALE_SECONDS)
        claimed = Compaction.objects.filter(pk=compaction_id, status=CompactionStatus.RUNNING,
                                            started_at__lt=stale).update(started_at=now,
                                                                         attempts=F("attempts") + 1)
    if not claimed:
        return None
    return Compaction.objects.select_related("run", "run__agent", "run__connection").get(pk=compaction_id)


def compaction_execute(*, compaction_id: int, final_attempt: bool = True) -> Compaction | None:
    """Apply a pending compaction's policy (the body of the ``engine.compact`` task).

    Claims it with a conditional UPDATE (pending → running), so of several deliveries exactly one
    works; a ready or failed compaction is left alone. Raises :class:`SummaryError` when the
    summariser failed transiently and this is not the final attempt (the compaction goes back to
    pending for Celery's retry); otherwise a failure marks it failed with the error.
    """
    compaction = _claim(compaction_id)
    if compaction is None:
        return None
    run = compaction.run
    base = (
        Compaction.objects.filter(run__in=Run.objects.ancestor_of(run, inclusive=True), memory_id=compaction.memory_id,
                                  status=CompactionStatus.READY)
        .exclude(pk=compaction.pk).order_by("-run__depth", "-id").first()
    )
    policy = parse_policy(compaction.policy)
    step = Step.objects.create(
        run=run, kind=StepKind.COMPACTION, name="compaction",
        request={"compaction_id": compaction.pk, "memory_id": compaction.memory_id, "policy": policy.to_json(),
                 "base": base.pk if base else None, "usable_window": compaction.usable_window,
                 "utilisation_before": compaction.utilisation_before, "tokens_before": compaction.tokens_before},
    )
    work = Compaction(
        run=run, memory_id=compaction.memory_id, status=CompactionStatus.READY,
        from_depth=base.from_depth if base else 0, replaced=dict(base.replaced) if base else {},
        dropped=list(base.dropped) if base else [], summary=base.summary if base else "",
    )
    work.pk = compaction.pk
    try:
        result = _run_strategies(work, policy, run)
    except Exception as exc:  # recorded on the compaction and its step
        return _record_failure(compaction, step, exc, final_attempt=final_attempt)
    return _record_success(compaction, step, work, base, result)


class _Result:
    """What the strategies did: ``applied`` (one entry per strategy run), the messages they
    replaced, the summariser's usage and the context measured afterwards."""

    def __init__(self) -> None:
        self.applied: list[dict] = []
        self.replaced_ids: list[int] = []
        self.usage: dict = {"prompt_tokens": None, "completion_tokens": None, "model": "", "connection": ""}
        self.measured = None
        self.before = None


def _run_strategies(work: Compaction, policy, run: Run) -> _Result:
    """Apply the policy's strategies to ``work`` in order until utilisation is at most the target."""
    agent = run.agent
    counter = run_counter(run)
    path = ctx.path_messages(run)
    memory_ids = ctx.path_memory_ids(run)
    pinned = pinned_ids(path)
    result = _Result()

    def measure():
        return measure_next(run, agent=agent, counter=counter, path=path, compaction=work, memory_ids=memory_ids)

    result.measured = result.before = measure()
    for strategy in policy.strategies:
        if result.measured.full_utilisation <= policy.target:
            break
        before = result.measured.full_utilisation
        did = _apply(strategy, work, _history(path, work, memory_ids, pinned), run=run, agent=agent, counter=counter,
                     usage=result.usage, replaced_ids=result.replaced_ids)
        result.measured = measure()
        result.applied.append({**did, "type": strategy["type"], "utilisation_before": round(before, 4),
                               "utilisation_after": round(result.measured.full_utilisation, 4)})
    return result


def _record_failure(compaction: Compaction, step: Step, exc: Exception, *, final_attempt: bool) -> Compaction:
    transient = is_transient(exc) or isinstance(exc, SummaryError)
    etype, emsg = (exc.etype, str(exc)) if isinstance(exc, (SummaryError, SummaryFailed)) else describe_error(exc)
    now = timezone.now()
    step.status, step.finished_at, step.error = RunStatus.FAILED, now, {"type": etype, "message": emsg}
    step.save(update_fields=["status", "finished_at", "error"])
    if transient and not final_attempt:
        Compaction.objects.filter(pk=compaction.pk).update(status=CompactionStatus.PENDING, error=emsg)
        raise SummaryError(emsg) from exc
    Compaction.objects.filter(pk=compaction.pk).update(status=CompactionStatus.FAILED, error=emsg,
                                                       finished_at=now, step=step)
    log.warning("compaction %s failed: %s", compaction.pk, emsg)
    return Compaction.objects.get(pk=compaction.pk)


def _record_success(compaction: Compaction, step: Step, work: Compaction, base: Compaction | None,
                    result: _Result) -> Compaction:
    now = timezone.now()
    measured, usage = result.measured, result.usage
    fields = {
        "status": CompactionStatus.READY, "base": base, "applied": result.applied, "from_depth": work.from_depth,
        "replaced": work.replaced, "dropped": work.dropped, "replaced_message_ids": sorted(set(result.replaced_ids)),
        "summary": work.summary, "model": usage["model"], "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "tokens_after": measured.fixed_tokens + measured.history_tokens,
        "utilisation_after": round(measured.full_utilisation, 4), "finished_at": now, "step": step, "error": "",
    }
    if not compaction.tokens_before and result.before is not None:  # asked for by hand: measured here
        fields["tokens_before"] = result.before.fixed_tokens + result.before.history_tokens
        fields["utilisation_before"] = round(result.before.full_utilisation, 4)
    with transaction.atomic():
        updated = Compaction.objects.filter(pk=compaction.pk, status=CompactionStatus.RUNNING).update(**fields)
        step.status, step.finished_at = (RunStatus.SUCCEEDED if updated else RunStatus.CANCELLED), now
        step.prompt_tokens, step.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
        step.response = {"applied": result.applied, "utilisation_after": fields["utilisation_after"],
                         "tokens_after": fields["tokens_after"],
                         "replaced_messages": len(fields["replaced_message_ids"]),
                         "summary": work.summary, "model": usage["model"], "connection": usage["connection"]}
        step.save()
    return Compaction.objects.get(pk=compaction.pk)


def _history(path: list[Message], work: Compaction, memory_ids: dict, pinned: set[int] = frozenset()
             ) -> list[Message]:
    """The messages the strategies work on: this memory id's, after ``work`` so far; pinned messages
    never (no strategy drops, truncates or summarises them: the context builder sends them verbatim)."""
    covered = set(work.dropped)
    return [m for m in path if memory_ids.get(m.run_id) == work.memory_id and m.run.depth >= work.from_depth
            and m.pk not in covered and m.pk not in pinned]


def _turns(history: list[Message]) -> list[list[Message]]:
    turns: list[list[Message]] = []
    for message in history:
        if turns and turns[-1][0].run_id == message.run_id:
            turns[-1].append(message)
        else:
            turns.append([message])
    return turns


def _apply(strategy: dict, work: Compaction, history: list[Message], *, run: Run, agent: Agent | None,
           counter: TokenCounter, usage: dict, replaced_ids: list[int]) -> dict:
    kind = strategy["type"]
    turns = _turns(history)
    if kind == "keep_last_turns":
        keep = strategy["turns"]
        if len(turns) <= keep:
            return {"acted": False, "reason": f"{len(turns)} turns, keeping {keep}"}
        cut = turns[: len(turns) - keep]
        work.from_depth = turns[len(turns) - keep][0].run.depth if keep else run.depth + 1
        replaced_ids.extend(m.pk for t in cut for m in t)
        return {"acted": True, "turns_dropped": len(cut), "messages": [m.pk for t in cut for m in t]}
    if kind == "tool_results":
        limit, action = strategy["max_chars"], strategy["action"]
        hits = []
        for message in history:
            content = work.replaced.get(str(message.pk), message.content)
            if message.role != Role.TOOL or len(content) <= limit:
                continue
            if action == "truncate":
                note = f"\n[… {len(content) - limit} more characters truncated by compaction]"
                work.replaced[str(message.pk)] = content[:limit] + note
            else:
                work.replaced[str(message.pk)] = f"[tool result of {len(content)} characters dropped by compaction]"
            hits.append(message.pk)
        replaced_ids.extend(hits)
        return {"acted": bool(hits), "action": action, "messages": hits}
    # summarize
    keep = strategy["keep_recent_turns"]
    if len(turns) <= keep:
        return {"acted": False, "reason": f"{len(turns)} turns, {keep} stay verbatim"}
    older = turns[: len(turns) - keep]
    text, response_usage, model = summarise_shared(
        previous=work.summary, turns=older, replaced=work.replaced, strategy=strategy, run=run, agent=agent,
        counter=counter, memory_id=work.memory_id,
    )
    work.summary = text
    work.from_depth = turns[len(turns) - keep][0].run.depth if keep else run.depth + 1
    work.replaced = {k: v for k, v in work.replaced.items()
                     if int(k) not in {m.pk for t in older for m in t}}
    replaced_ids.extend(m.pk for t in older for m in t)
    usage["model"], usage["connection"] = model, response_usage.get("connection", "")
    for key in ("prompt_tokens", "completion_tokens"):
        if response_usage.get(key) is not None:
            usage[key] = (usage[key] or 0) + response_usage[key]
    return {"acted": True, "turns_summarised": len(older), "messages": [m.pk for t in older for m in t],
            "summary_chars": len(text), "model": model, "connection": usage["connection"],
            "shared": bool(response_usage.get("shared"))}


def summary_key(*, memory_id: str, previous: str, turns: list[list[Message]], replaced: dict[str, str],
                strategy: dict, model: str) -> str:
    """SHA-256 of everything that determines a summary's text (see :class:`memory.models.SharedSummary`)."""
    ids = [m.pk for turn in turns for m in turn]
    data = [memory_id, previous, ids, {str(i): replaced[str(i)] for i in ids if str(i) in replaced},
            strategy.get("prompt"), model, strategy.get("connection"), strategy.get("temperature"),
            strategy.get("max_tokens")]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def _key_lock(key: str):
    """Serialise workers summarising the same prefix (a PostgreSQL session advisory lock on the key;
    nothing on SQLite, whose writers are serialised anyway)."""
    if connection.vendor != "postgresql":
        yield
        return
    number = int(key[:15], 16)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [number])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [number])


def summarise_shared(*, memory_id: str, previous: str, turns: list[list[Message]], replaced: dict[str, str],
                     strategy: dict, run: Run, agent: Agent | None, counter: TokenCounter) -> tuple[str, dict, str]:
    """:func:`summarise`, computed once per prefix: a sibling (or any compaction) summarising the
    same messages the same way reuses the stored :class:`~memory.models.SharedSummary` with no model
    call (its usage is reported as ``{"shared": True}`` without token counts). Same returns and errors."""
    model = strategy.get("model") or (agent.model if agent is not None and agent.model else "") or run.model
    key = summary_key(memory_id=memory_id, previous=previous, turns=turns, replaced=replaced, strategy=strategy,
                      model=model)
    with _key_lock(key):
        shared = SharedSummary.objects.filter(key=key).first()
        if shared is not None:
            SharedSummary.objects.filter(pk=shared.pk).update(uses=F("uses") + 1)
            return shared.summary, {"shared": True, "connection": shared.usage.get("connection", "")}, shared.model
        text, usage, model = summarise(previous=previous, turns=turns, replaced=replaced, strategy=strategy, run=run,
                                       agent=agent, counter=counter)
        SharedSummary.objects.create(key=key, memory_id=memory_id, summary=text, model=model, usage=usage)
    return text, usage, model


def _transcript(turns: list[list[Message]], replaced: dict[str, str]) -> str:
    lines = []
    for turn in turns:
        for message in turn:
            content = replaced.get(str(message.pk), message.content).strip()
            if message.role == Role.USER:
                lines.append(f"User: {content}")
            elif message.role == Role.ASSISTANT and message.tool_calls:
                calls = ", ".join(
                    f"{(c.get('function') or {}).get('name')}({(c.get('function') or {}).get('arguments')})"
                    for c in message.tool_calls if isinstance(c, dict)
                )
                lines.append(f"Assistant called {calls}" + (f" and said: {content}" if content else ""))
            elif message.role == Role.TOOL:
                lines.append(f"Tool result: {content}")
            elif content:
                lines.append(f"Assistant: {content}")
    return "\n".join(lines)


def summarise(*, previous: str, turns: list[list[Message]], replaced: dict[str, str], strategy: dict, run: Run,
              agent: Agent | None, counter: TokenCounter) -> tuple[str, dict, str]:
    """Ask the agent's model for a summary of ``turns`` that continues ``previous``, on the
    connection the strategy names, else the run's (its agent's). Returns ``(text, usage, model)``;
    the text is cut to ``max_tokens`` tokens.

    ``usage`` holds the summed token counts and ``connection``, the name of the connection used.
    Turns that do not fit the summariser's window in one request are summarised in chunks, each
    request carrying the summary so far (incremental, never re-reading what a summary covers).
    Raises SummaryError (transient endpoint failure, naming the connection), ConnectionUnusable
    or the endpoint's error.
    """
    model = strategy.get("model") or (agent.model if agent is not None and agent.model else "") or run.model
    endpoint = summariser_endpoint(strategy, owner_id=agent.owner_id if agent is not None else None,
                                   connection=run.connection)
    max_tokens = strategy["max_tokens"]
    window = budget_for(model=model, agent=agent, connection_id=endpoint.connection_id).context_window
    fixed = counter.count(strategy["prompt"]) + 2 * max_tokens + 40  # prompt, summary so far, answer, framing
    room = max(64, window - fixed)
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for turn in turns:
        text = _transcript([turn], replaced)
        tokens = counter.count(text)
        if tokens > room:  # one turn larger than the room: keep its beginning
            text = _cut_to_tokens(text, room, counter) + " […]"
            tokens = counter.count(text)
        if current and used + tokens > room:
            chunks.append("\n".join(current))
            current, used = [], 0
        current.append(text)
        used += tokens
    if current:
        chunks.append("\n".join(current))
    summary = previous
    usage: dict = {}
    for chunk in chunks:
        summary, call_usage = _summarise_once(summary, chunk, strategy=strategy, model=model, counter=counter,
                                              endpoint=endpoint)
        for key, value in call_usage.items():
            usage[key] = usage.get(key, 0) + value
    usage["connection"] = endpoint.name
    return summary, usage, model


def _summarise_once(previous: str, transcript: str, *, strategy: dict, model: str, counter: TokenCounter,
                    endpoint: Endpoint) -> tuple[str, dict]:
    # The earlier summary opens the transcript (small models keep what comes first; a separate
    # "summary so far" section was dropped by SmolLM2-135M in our trials).
    earlier = f"{EARLIER_LABEL}{previous.strip()}\n" if previous else ""
    parts = [strategy["prompt"].strip(), f"Conversation:\n{earlier}{transcript}",
             f"Summary (at most {strategy['max_tokens']} tokens):"]
    messages = [{"role": "user", "content": "\n\n".join(parts)}]
    try:
        response = get_client(endpoint).chat.completions.create(
            model=model, messages=messages, max_tokens=strategy["max_tokens"],
            temperature=strategy.get("temperature", 0.0), stream=False,
        )
    except Exception as exc:
        if is_transient(exc):
            etype, emsg = describe_error(exc, endpoint)
            raise SummaryError(emsg, etype) from exc
        raise SummaryFailed(*describe_error(exc, endpoint)) from exc
    text = (response.choices[0].message.content or "").strip() if response.choices else ""
    if not text:
        text = previous  # an empty answer must not erase what the earlier summary kept
    text = _cut_to_tokens(text, strategy["max_tokens"], counter)
    usage = {}
    if response.usage is not None:
        usage = {"prompt_tokens": response.usage.prompt_tokens or 0,
                 "completion_tokens": response.usage.completion_tokens or 0}
    return text, usage


def _cut_to_tokens(text: str, max_tokens: int, counter: TokenCounter) -> str:
    tokens = counter.count(text)
    while tokens > max_tokens and text:
        text = text[: max(0, int(len(text) * max_tokens / tokens) - 1)].rstrip()
        tokens = counter.count(text)
    return text
