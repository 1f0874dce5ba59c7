"""Compaction: keeping a branch's history inside the context window, per memory id.

**When.** After each run (the ``conversations.signals.run_finished`` signal, in the worker) the
context a child of that run would start from is measured: tokens ÷ usable window (context window −
reserved output tokens). Above the policy's ``threshold`` (default 0.8,
``settings.ARBOR_COMPACTION_THRESHOLD``) a :class:`~memory.models.Compaction` is created for that run
and memory id, and the Celery task ``memory.compact`` does the work — never a web request.

**What.** The policy's strategies run in order until utilisation is at or below ``target``
(default: half the threshold):

- ``{"type": "keep_last_turns", "turns": N}`` — turns older than the newest N are left out;
- ``{"type": "tool_results", "max_chars": C, "action": "truncate" | "drop"}`` — tool results longer
  than C characters are cut to C (or replaced by a one-line note); the call/result pair stays intact;
- ``{"type": "summarize", "keep_recent_turns": K, "max_tokens": T, "model": M, "prompt": P,
  "temperature": 0.0}`` — turns older than the newest K are summarised by the LLM (model M, default
  the agent's model, on the same endpoint and client as the agent's runs) into at most T tokens.
  Incremental: the model gets the previous summary and only the turns after it.

A policy is the agent's ``compaction`` JSON: ``{"enabled": true, "threshold": 0.8, "target": 0.4,
"strategies": [...]}``; omitted keys take the defaults in :data:`DEFAULT_STRATEGIES`.

**Where.** A compaction is attached to the run whose ancestors it covers; descendants of that run
use it once it is ready (:mod:`memory.context`), other branches never see it, and a run that starts
while it is pending falls back to truncation by the budget. Every compaction is recorded (strategy,
utilisation before/after, replaced messages, summary, model, usage) and written as a Step of kind
``compaction`` in its run's trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from conversations import context as ctx
from conversations.llm import describe_error, get_client, is_transient
from conversations.models import Message, Role, Run, RunStatus, Step, StepKind

from .context import BuiltContext, _assemble, budget_for, system_prompt_for
from .models import Agent, Compaction, CompactionStatus
from .tokens import TokenCounter, counter_for

log = logging.getLogger(__name__)

STRATEGY_TYPES = ("keep_last_turns", "tool_results", "summarize")
# Worded for small models too: asking for the user's own statements first, verbatim, is what kept a
# code word from turn 1 through three incremental summaries with SmolLM2-135M (a generic "summarise,
# keep every fact" prompt lost it in the first summary).
DEFAULT_SUMMARY_PROMPT = (
    "Write the assistant's memory of this conversation. First, everything the user said about themselves "
    "or asked to remember (names, numbers, code words, preferences), word for word. Then one line listing "
    "the topics discussed."
)
DEFAULT_STRATEGIES = [
    {"type": "tool_results", "max_chars": 4000, "action": "truncate"},
    {"type": "summarize", "keep_recent_turns": 4, "max_tokens": 256},
]
EARLIER_LABEL = "Earlier (summary of what came before): "
STALE_SECONDS = 600  # a pending/running compaction older than this no longer blocks a new one


class SummaryError(Exception):
    """The summariser's endpoint failed transiently (the task retries)."""


@dataclass
class Policy:
    enabled: bool = True
    threshold: float = 0.8
    target: float = 0.4
    strategies: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"enabled": self.enabled, "threshold": self.threshold, "target": self.target,
                "strategies": self.strategies}


def parse_policy(data: dict | None) -> Policy:
    """A validated policy from an agent's ``compaction`` JSON (defaults filled in).

    Raises ValidationError with a readable message for unknown strategy types, out-of-range
    numbers or wrong types.
    """
    data = dict(data or {})
    unknown = set(data) - {"enabled", "threshold", "target", "strategies"}
    if unknown:
        raise ValidationError(f"unknown compaction keys: {', '.join(sorted(unknown))}")
    threshold = data.get("threshold", settings.ARBOR_COMPACTION_THRESHOLD)
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValidationError("compaction threshold must be a number in (0, 1]")
    target = data.get("target", threshold / 2)
    if not isinstance(target, (int, float)) or not 0 <= target <= threshold:
        raise ValidationError("compaction target must be a number between 0 and the threshold")
    strategies = data.get("strategies", DEFAULT_STRATEGIES)
    if not isinstance(strategies, list):
        raise ValidationError("compaction strategies must be a list")
    clean = []
    for raw in strategies:
        if not isinstance(raw, dict) or raw.get("type") not in STRATEGY_TYPES:
            raise ValidationError(f"each strategy needs a type among {', '.join(STRATEGY_TYPES)}")
        s = dict(raw)
        kind = s["type"]
        if kind == "keep_last_turns":
            s.setdefault("turns", 10)
            _positive_int(s, "turns", minimum=0)
        elif kind == "tool_results":
            s.setdefault("max_chars", 4000)
            s.setdefault("action", "truncate")
            _positive_int(s, "max_chars", minimum=0)
            if s["action"] not in ("truncate", "drop"):
                raise ValidationError("tool_results action must be 'truncate' or 'drop'")
        else:
            s.setdefault("keep_recent_turns", 4)
            s.setdefault("max_tokens", 256)
            s.setdefault("temperature", 0.0)
            s.setdefault("model", "")
            s.setdefault("prompt", DEFAULT_SUMMARY_PROMPT)
            _positive_int(s, "keep_recent_turns", minimum=0)
            _positive_int(s, "max_tokens", minimum=16)
            if not isinstance(s["prompt"], str) or not s["prompt"].strip():
                raise ValidationError("summarize prompt must be a non-empty string")
        clean.append(s)
    return Policy(enabled=bool(data.get("enabled", True)), threshold=float(threshold), target=float(target),
                  strategies=clean)


def _positive_int(s: dict, key: str, *, minimum: int) -> None:
    if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < minimum:
        raise ValidationError(f"{s['type']} {key} must be an integer ≥ {minimum}")


def policy_for(agent: Agent | None) -> Policy:
    return parse_policy(agent.compaction if agent is not None else None)


# --- measuring after a run ----------------------------------------------------------------------

def on_run_finished(sender, run: Run, status: str, **kwargs) -> None:
    """Receiver of ``run_finished`` (in the worker): measure, and enqueue a compaction if needed."""
    try:
        compaction_consider(run=run, status=status)
    except Exception:  # noqa: BLE001 - a measuring failure must never break the run's worker
        log.exception("compaction: measuring after run %s failed", run.pk)


def compaction_consider(*, run: Run, status: str = RunStatus.SUCCEEDED, counter: TokenCounter | None = None
                        ) -> Compaction | None:
    """Measure the context a child of ``run`` would start from; when its utilisation exceeds the
    policy's threshold, create a pending :class:`Compaction` for ``run`` and enqueue the task after
    commit. Returns the compaction created, or None (under the threshold, compaction disabled, the
    run did not succeed, a window of 0, or another compaction on this path still in progress).
    """
    if status != RunStatus.SUCCEEDED:
        return None
    agent = run.agent
    policy = policy_for(agent)
    if not policy.enabled or not policy.strategies or (agent is not None and agent.memory_window_size == 0):
        return None
    measured = measure_next_full(run, agent=agent, counter=counter)
    if measured.full_utilisation <= policy.threshold:
        return None
    recent = timezone.now() - timedelta(seconds=STALE_SECONDS)
    busy = Compaction.objects.filter(
        run__in=Run.objects.ancestor_of(run, inclusive=True), memory_id=run.memory_id,
        status__in=(CompactionStatus.PENDING, CompactionStatus.RUNNING), created_at__gte=recent,
    ).exists()
    if busy:
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


def _enqueue(compaction: Compaction) -> None:
    from .tasks import compact

    pk = compaction.pk
    queue = settings.ARBOR_COMPACTION_QUEUE or settings.ARBOR_RUN_QUEUE
    transaction.on_commit(lambda: compact.apply_async((pk,), queue=queue))


def measure_next_full(run: Run, *, agent: Agent | None, counter: TokenCounter | None = None,
                      path: list[Message] | None = None, compaction: Compaction | None | object = ...,
                      memory_ids: dict | None = None) -> BuiltContext:
    """Like :func:`memory.context.measure_next`, optionally with a given (unsaved) compaction."""
    from .context import latest_compactions

    counter = counter or counter_for(settings.OPENAI_BASE_URL)
    budget = budget_for(model=agent.model if agent is not None and agent.model else run.model, agent=agent)
    path = path if path is not None else ctx.path_messages(run)
    if compaction is ...:
        compactions = latest_compactions(run, run.memory_id, inclusive=True)
    else:
        compactions = (compaction, False)
    return _assemble(
        run_pk=None, ancestors=path, own=[], own_upto=0, tail=[], memory_id=run.memory_id,
        memory_ids=memory_ids if memory_ids is not None else ctx.path_memory_ids(run), window=agent.memory_window_size if agent is not None else None, system=system_prompt_for(run, agent),
        budget=budget, counter=counter, compactions=compactions,
    )


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
    return Compaction.objects.select_related("run", "run__agent").get(pk=compaction_id)


def compaction_execute(*, compaction_id: int, final_attempt: bool = True) -> Compaction | None:
    """Apply a pending compaction's policy (the body of the ``memory.compact`` task).

    Claims it with a conditional UPDATE (pending → running), so of several deliveries exactly one
    works; a ready or failed compaction is left alone. Raises :class:`SummaryError` when the
    summariser failed transiently and this is not the final attempt (the compaction goes back to
    pending for Celery's retry); otherwise a failure marks it failed with the error.
    """
    compaction = _claim(compaction_id)
    if compaction is None:
        return None
    run = compaction.run
    agent = run.agent
    policy = parse_policy(compaction.policy)
    counter = counter_for(settings.OPENAI_BASE_URL)
    path = ctx.path_messages(run)
    memory_ids = ctx.path_memory_ids(run)
    base = (
        Compaction.objects.filter(run__in=Run.objects.ancestor_of(run, inclusive=True), memory_id=compaction.memory_id,
                                  status=CompactionStatus.READY)
        .exclude(pk=compaction.pk).order_by("-run__depth", "-id").first()
    )
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
    applied: list[dict] = []
    replaced_ids: list[int] = []
    usage = {"prompt_tokens": None, "completion_tokens": None, "model": ""}
    try:
        measured = measure_next_full(run, agent=agent, counter=counter, path=path, compaction=work,
                                         memory_ids=memory_ids)
        for strategy in policy.strategies:
            if measured.full_utilisation <= policy.target:
                break
            before = measured.full_utilisation
            history = _history(path, work, memory_ids)
            did = _apply(strategy, work, history, run=run, agent=agent, counter=counter, usage=usage,
                         replaced_ids=replaced_ids)
            measured = measure_next_full(run, agent=agent, counter=counter, path=path, compaction=work,
                                         memory_ids=memory_ids)
            applied.append({**did, "type": strategy["type"], "utilisation_before": round(before, 4),
                            "utilisation_after": round(measured.full_utilisation, 4)})
    except Exception as exc:  # noqa: BLE001 - recorded on the compaction and its step
        transient = is_transient(exc) or isinstance(exc, SummaryError)
        etype, emsg = describe_error(exc.__cause__ or exc) if isinstance(exc, SummaryError) else describe_error(exc)
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

    now = timezone.now()
    fields = {
        "status": CompactionStatus.READY, "base": base, "applied": applied, "from_depth": work.from_depth,
        "replaced": work.replaced, "dropped": work.dropped, "replaced_message_ids": sorted(set(replaced_ids)),
        "summary": work.summary, "model": usage["model"], "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "tokens_after": measured.fixed_tokens + measured.history_tokens,
        "utilisation_after": round(measured.full_utilisation, 4), "finished_at": now, "step": step, "error": "",
    }
    with transaction.atomic():
        updated = Compaction.objects.filter(pk=compaction.pk, status=CompactionStatus.RUNNING).update(**fields)
        step.status, step.finished_at = (RunStatus.SUCCEEDED if updated else RunStatus.CANCELLED), now
        step.prompt_tokens, step.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
        step.response = {"applied": applied, "utilisation_after": fields["utilisation_after"],
                         "tokens_after": fields["tokens_after"], "replaced_messages": len(fields["replaced_message_ids"]),
                         "summary": work.summary, "model": usage["model"]}
        step.save()
    return Compaction.objects.get(pk=compaction.pk)


def _history(path: list[Message], work: Compaction, memory_ids: dict) -> list[Message]:
    covered = set(work.dropped)
    return [m for m in path if memory_ids.get(m.run_id) == work.memory_id and m.run.depth >= work.from_depth
            and m.pk not in covered]


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
    text, response_usage, model = summarise(
        previous=work.summary, turns=older, replaced=work.replaced, strategy=strategy, run=run, agent=agent,
        counter=counter,
    )
    work.summary = text
    work.from_depth = turns[len(turns) - keep][0].run.depth if keep else run.depth + 1
    work.replaced = {k: v for k, v in work.replaced.items()
                     if int(k) not in {m.pk for t in older for m in t}}
    replaced_ids.extend(m.pk for t in older for m in t)
    usage["model"] = model
    for key in ("prompt_tokens", "completion_tokens"):
        if response_usage.get(key) is not None:
            usage[key] = (usage[key] or 0) + response_usage[key]
    return {"acted": True, "turns_summarised": len(older), "messages": [m.pk for t in older for m in t],
            "summary_chars": len(text), "model": model}


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
    """Ask the agent's model (on the agent's endpoint) for a summary of ``turns`` that continues
    ``previous``. Returns ``(text, usage, model)``; the text is cut to ``max_tokens`` tokens.

    Turns that do not fit the summariser's window in one request are summarised in chunks, each
    request carrying the summary so far (incremental, never re-reading what a summary covers).
    Raises SummaryError (transient endpoint failure) or the endpoint's error.
    """
    model = strategy.get("model") or (agent.model if agent is not None and agent.model else "") or run.model
    max_tokens = strategy["max_tokens"]
    window = budget_for(model=model, agent=agent).context_window
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
        summary, call_usage = _summarise_once(summary, chunk, strategy=strategy, model=model, counter=counter)
        for key, value in call_usage.items():
            usage[key] = usage.get(key, 0) + value
    return summary, usage, model


def _summarise_once(previous: str, transcript: str, *, strategy: dict, model: str, counter: TokenCounter
                    ) -> tuple[str, dict]:
    # The earlier summary opens the transcript (small models keep what comes first; a separate
    # "summary so far" section was dropped by SmolLM2-135M in our trials).
    earlier = f"{EARLIER_LABEL}{previous.strip()}\n" if previous else ""
    parts = [strategy["prompt"].strip(), f"Conversation:\n{earlier}{transcript}",
             f"Summary (at most {strategy['max_tokens']} tokens):"]
    messages = [{"role": "user", "content": "\n\n".join(parts)}]
    try:
        response = get_client().chat.completions.create(
            model=model, messages=messages, max_tokens=strategy["max_tokens"],
            temperature=strategy.get("temperature", 0.0), stream=False,
        )
    except Exception as exc:
        if is_transient(exc):
            raise SummaryError(str(exc)) from exc
        raise
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
