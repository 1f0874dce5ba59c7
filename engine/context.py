"""Building a run's context with its agent's memory settings, within the model's token budget.

Rules, applied in this order to the messages on the path from the root to the run:

1. **Branches**: only the run's ancestors count (one recursive CTE reads the path). A turn reads
   only the messages it can send (:func:`read_path`): those from the ready compaction's start on
   (rule 3), and the pinned turns (rule 3a); of the runs above it reads only depth and memory id.
2. **Memory ids**: an ancestor's messages count only if its run has the memory id being built for
   (agents sharing a ``memory_id`` share history; different ids are isolated).
3. **Compaction**: the newest *ready* :class:`~memory.models.Compaction` attached to an ancestor
   (same memory id) applies — its summary is sent after the system prompt, the turns it covers are
   left out, its replacements (truncated tool results) are used. A pending one is ignored: the
   budget below still keeps the context inside the window (fallback to truncation).
3a. **Pins** (:class:`~memory.models.Pin` on an ancestor): pinned messages are sent verbatim in
   path order whatever the compaction, window, budget or memory id would do; they count as fixed
   (with the system prompt and the run's own messages) — too many fail the run, naming them.
4. **Window**: ``memory_window_size`` N keeps the newest N history messages, 0 keeps none (no
   summary either: only the system prompt and the new input), unset keeps all.
5. **Budget**: the whole context never exceeds the usable window (context window − reserved output
   tokens); the oldest history goes first.

An assistant message with ``tool_calls`` and its tool results are one unit: kept or left out
together; an unfinished exchange (a cancelled run's tool call without its result) is left out, as
is a tool message without its call — OpenAI-compatible APIs reject both. The system prompt (the
agent's, else ``settings.ARBOR_SYSTEM_PROMPT``) and the run's own messages are always kept.

The result is a :class:`conversations.context_spec.ContextSpec` (a few ids and numbers, never a copy of
the history) from which :func:`conversations.context_spec.rebuild` re-renders the exact messages: the
spec's format and its rebuild-and-verify live beside the messages they select; building and
measuring live here, the only place that applies an agent's memory settings.
"""

from __future__ import annotations

from django.conf import settings

from connections.selectors import base_url_for
from conversations import context_spec as ctx
from conversations.models import Message, Role, Run
from core.tokens import TokenCounter, counter_for
from memory.models import Agent, Compaction, CompactionStatus, Pin
from memory.policy import Budget, budget_for

from .context_parts import BuiltContext, Selection, context_tokens, labels_of, message_tokens, not_seen

__all__ = ["SUMMARY_HEADER", "BuiltContext", "ContextOverflow", "agent_budget", "build_context", "context_tokens",
           "latest_compactions", "measure_next", "message_tokens", "next_context", "pinned_ids",
           "read_path", "run_budget", "run_counter", "system_prompt_for", "tool_units"]

SUMMARY_HEADER = ctx.SUMMARY_HEADER


class ContextOverflow(Exception):
    """The system prompt, the pinned messages, the run's own messages and the new input alone exceed
    the usable window (the message names the pins when there are any)."""


def system_prompt_for(run: Run | None, agent: Agent | None) -> str:
    """The system prompt of a model call: the chat settings' override the run recorded
    (``params["system_override"]``, :class:`memory.models.BranchSettings`) for the run's own agent,
    else the agent's, else the run's ``params["system"]``, else ``settings.ARBOR_SYSTEM_PROMPT``."""
    if run is not None and run.params.get("system_override") and (agent is None or agent.pk == run.agent_id):
        return run.params["system_override"]
    if agent is not None and agent.system_prompt:
        return agent.system_prompt
    if run is not None and run.params.get("system"):
        return run.params["system"]
    return settings.ARBOR_SYSTEM_PROMPT


def tool_units(messages: list[Message]) -> tuple[list[list[Message]], list[Message]]:
    """Split history into units kept or dropped whole: a single message, or an assistant message
    with ``tool_calls`` followed by every one of its tool results.

    Returns ``(units, unpaired)``: ``unpaired`` are messages that cannot be sent (a tool result
    without its call, a call missing some result).
    """
    units: list[list[Message]] = []
    unpaired: list[Message] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        if message.role == Role.ASSISTANT and message.tool_calls:
            wanted = {call.get("id") for call in message.tool_calls if isinstance(call, dict)}
            group = [message]
            j = i + 1
            while j < len(messages) and messages[j].role == Role.TOOL and messages[j].run_id == message.run_id:
                group.append(messages[j])
                j += 1
            got = {m.tool_call_id for m in group[1:]}
            if wanted and got == wanted:
                units.append(group)
            else:
                unpaired.extend(group)
            i = j
        elif message.role == Role.TOOL:
            unpaired.append(message)
            i += 1
        else:
            units.append([message])
            i += 1
    return units, unpaired


def latest_compactions(run: Run | str, memory_id: str, *, inclusive: bool = False) -> tuple[Compaction | None, bool]:
    """The newest ready compaction attached to an ancestor of ``run`` for ``memory_id``, and whether
    a newer one on the path is still pending or running. One query."""
    rows = list(
        ctx.on_path(Compaction.objects.filter(memory_id=memory_id), run, inclusive=inclusive)
        .select_related("run").order_by("-run__depth", "-id")
    )
    ready, pending = _newest([(c.run.depth, c.pk, c.status, c) for c in rows])
    return ready, pending


def _newest(rows: list[tuple]) -> tuple:
    """``(the item of the newest ready compaction or None, whether a newer one is pending or
    running)`` of ``rows`` ``[(its run's depth, id, status, item)]``: newest = deepest run, then
    highest id."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)
    ready = next((r for r in rows if r[2] == CompactionStatus.READY), None)
    ready_depth = ready[0] if ready else -1
    pending = any(r[2] in (CompactionStatus.PENDING, CompactionStatus.RUNNING) and r[0] > ready_depth for r in rows)
    return (ready[3] if ready else None), pending


def pinned_ids(ancestors: list[Message], rows: list[tuple] | None = None) -> set[int]:
    """Ids of the pinned messages among ``ancestors`` (path order): a whole-turn pin pins each of
    the turn's messages; a pinned message of a tool exchange pins the whole exchange (call and
    results are sent together); a message that cannot be sent (an unfinished exchange) never is.
    ``rows``: the pins as ``(run_id, message_id or None)`` when already read (with the path:
    :func:`read_path`), else one query."""
    run_ids = {m.run_id for m in ancestors}
    if not run_ids:
        return set()
    if rows is None:
        rows = list(Pin.objects.filter(run_id__in=run_ids).values_list("run_id", "message_id"))
    rows = [(run_id, message_id) for run_id, message_id in rows if run_id in run_ids]
    if not rows:
        return set()
    whole = {run_id for run_id, message_id in rows if message_id is None}
    single = {message_id for _, message_id in rows if message_id is not None}
    units, _ = tool_units(ancestors)
    return {m.pk for unit in units if any(m.pk in single or m.run_id in whole for m in unit) for m in unit}


def read_path(run: Run, agent: Agent | None) -> tuple[list, dict]:
    """What a turn of ``run`` reads of its path, once, and only what its context can send: the
    depth and memory id of every run on it, the pins and the compactions (for
    ``run.memory_id``; none apply with a window of 0) on its ancestors
    (:func:`~conversations.context_spec.path_facts`), then the messages of the runs from the ready
    compaction's ``from_depth`` on (the turns it left out are never sent) and of the pinned runs.
    Two queries at any depth, three when a compaction applies (it is read by id).

    Returns ``(path, memory_ids)``: ``path`` a :class:`~conversations.context_spec.PathSlice`
    carrying the compactions and pins it was cut by (:func:`build_context` and
    :func:`measure_next` reuse them, and read the whole path and its memory ids again only when
    they apply a compaction that starts above the slice); ``memory_ids`` ``{run_id: memory_id}`` of
    the runs whose messages were read (the others' are in ``path.earlier``)."""
    window = agent.memory_window_size if agent is not None else None
    memory_of, pins, found = ctx.path_facts(run, run.memory_id)
    ready, pending = _newest([(depth, pk, status, pk) for depth, status, pk in found])
    ready = _compaction(ready) if ready is not None and window != 0 else None
    start = min(ready.from_depth, run.depth) if ready is not None else 0
    pinned_runs = {run_id for run_id, _ in pins}
    path = ctx.path_messages(run, from_depth=start, also=pinned_runs)
    if not isinstance(path, ctx.PathSlice):
        path = ctx.PathSlice(path)
    path.earlier = _earlier(memory_of, start, {m.depth for m in path if m.depth < start})
    path.memory_id, path.pins = run.memory_id, pins
    path.compactions = (ready, pending) if window != 0 else None
    return path, {m.run_id: memory_of[m.depth] for m in path}


def _compaction(pk: int) -> Compaction | None:
    """The compaction ``pk`` (None when it went since the path's facts were read): by primary key,
    with no ordering (``.first()`` would add ``ORDER BY`` and ``LIMIT``)."""
    return next(iter(Compaction.objects.filter(pk=pk).order_by()), None)


def _earlier(memory_of: list[str], start: int, read: set[int]) -> tuple:
    """``((memory_id, depth), …)`` of the runs above ``start`` whose messages were not read (all of
    them but the pinned runs in ``read``)."""
    earlier = zip(memory_of[:start], range(start), strict=True)
    return tuple(pair for pair in earlier if pair[1] not in read) if read else tuple(earlier)


def _reuse(run: Run, path: list | None, memory_id: str, window: int | None, inclusive: bool
           ) -> tuple[list, tuple[Compaction | None, bool], list | None, bool]:
    """``(path, compactions, pin rows or None, whether a slice was replaced by the whole path)`` for
    a context of ``memory_id``: what ``path`` carries when it was read for that memory id
    (:func:`read_path`), else read here (the whole path when none is given, or when the
    compaction that applies starts above the slice: then the memory ids are read again too)."""
    carried = isinstance(path, ctx.PathSlice) and path.compactions is not None and path.memory_id == memory_id
    if window == 0:
        compactions = (None, False)
    elif carried:
        compactions = path.compactions
    else:
        compactions = latest_compactions(run, memory_id, inclusive=inclusive)
    if not _holds(path, compactions[0], window):
        return ctx.path_messages(run), compactions, None, path is not None
    return path, compactions, path.pins if carried else None, False


def _holds(path: list | None, compaction: Compaction | None, window: int | None) -> bool:
    """Whether ``path`` holds every message a context cut by ``compaction`` (None: none applies) and
    ``window`` can send: the whole path, or a slice starting at or above the compaction's start."""
    start = getattr(path, "start", 0)
    return path is not None and (start == 0 or (window != 0 and compaction is not None
                                                 and compaction.from_depth >= start))


def agent_budget(run: Run, agent: Agent | None, model: str | None = None) -> Budget:
    """The budget of ``agent``'s call inside ``run``: on the agent's connection, else the run's
    (one query: the model's context window on that connection)."""
    connection_id = agent.connection_id if agent is not None and agent.connection_id else run.connection_id
    return budget_for(model=model or (agent.model if agent is not None and agent.model else run.model), agent=agent,
                      connection_id=connection_id)


def run_budget(run: Run) -> Budget:
    """The budget of ``run``'s own model call: ``run.model`` on ``run``'s connection, where the call
    goes (a model picked for this run, or a fan-out column's, may differ from its agent's), with
    the agent's own context window and reserved output when it sets them (one query: the model's
    context window on that connection)."""
    return budget_for(model=run.model, agent=run.agent, connection_id=run.connection_id)


def run_counter(run: Run) -> TokenCounter:
    """The token counter of the endpoint of ``run``'s connection."""
    return counter_for(base_url_for(run.connection))


def build_context(
    run: Run,
    *,
    agent: Agent | None | object = ...,
    memory_id: str | None = None,
    own_upto: int | None = None,
    tail: list[dict] | None = None,
    counter: TokenCounter | None = None,
    path: list[Message] | None = None,
    model: str | None = None,
    budget: Budget | None = None,
    memory_ids: dict | None = None,
) -> BuiltContext:
    """The context for a model call of ``run`` (or of a nested ``agent`` inside it).

    ``agent``: whose memory settings apply (default ``run.agent``; None: defaults). ``memory_id``:
    the history to read (default: the agent's for a nested agent, else ``run.memory_id``).
    ``own_upto``: the run's own messages with ``position < own_upto`` are sent (default: all so far).
    ``tail``: messages appended literally (a nested agent's prompt). ``path``, ``memory_ids``
    (``{run_id: memory_id}`` of the path), ``counter`` and ``budget``: what the caller has already
    read or derived (an engine :class:`~engine.execute.Turn` carries them), else read here.
    Queries: pins and compactions, plus the path, the memory ids and the model's context window
    when not given. Raises :class:`ContextOverflow` when the fixed part (system prompt, own
    messages, tail) does not fit the usable window.
    """
    if agent is ...:
        agent = run.agent
    if memory_id is None:
        memory_id = run.memory_id
    window = agent.memory_window_size if agent is not None else None
    path, compactions, pins, whole = _reuse(run, path, memory_id, window, inclusive=False)
    if whole:
        memory_ids = None  # those given may name only a slice's runs
    own = [m for m in path if m.run_id == run.pk]
    if own_upto is None:
        own_upto = max((m.position for m in own), default=-1) + 1
    ancestors = [m for m in path if m.run_id != run.pk]
    return _assemble(
        Selection(
            ancestors=ancestors, own=[m for m in own if m.position < own_upto],
            own_upto=own_upto, tail=list(tail or []), memory_id=memory_id,
            memory_ids=memory_ids if memory_ids is not None else ctx.path_memory_ids(run),
            window=window, system=system_prompt_for(run, agent), pinned=pinned_ids(ancestors, pins),
            earlier=getattr(path, "earlier", ()),
        ),
        budget=budget or agent_budget(run, agent, model), counter=counter or run_counter(run),
        compactions=compactions,
    )


def measure_next(run: Run, *, agent: Agent | None | object = ..., counter: TokenCounter | None = None,
                 path: list[Message] | None = None, compaction: Compaction | None | object = ...,
                 memory_ids: dict | None = None, budget: Budget | None = None,
                 system: str | None = None) -> BuiltContext:
    """The context a child of ``run`` would start from (``run``'s messages become history; no new
    input): what compaction measures after ``run`` finishes, and again after each strategy.

    ``compaction``: measure as if this (possibly unsaved) compaction applied; default: the newest
    ready one on the path, as ``path`` carries it when it is the turn's :func:`read_path` slice
    (read at the turn's start: no query; :func:`engine.compaction.compaction_consider` measures
    again with a fresh read before it acts on a figure over its threshold), else read (one query).
    ``path`` (through ``run``'s last message), ``memory_ids``, ``counter`` and ``budget`` may be
    passed when already read; the pins come with a carried ``path``, else one query.
    ``system``: the system prompt to count (default :func:`system_prompt_for` ``run`` and ``agent``).
    """
    if agent is ...:
        agent = run.agent
    window = agent.memory_window_size if agent is not None else None
    pins = None
    if compaction is ...:
        path, compactions, pins, whole = _reuse(run, path, run.memory_id, window, inclusive=True)
    else:
        compactions = (compaction, False)
        whole = not _holds(path, compaction, window)
        if whole:
            path = ctx.path_messages(run)
    if whole:
        memory_ids = None  # those given may name only the slice's runs
    return _assemble(
        Selection(
            ancestors=path, own=[], own_upto=0, tail=[],
            memory_id=run.memory_id, memory_ids=memory_ids if memory_ids is not None else ctx.path_memory_ids(run),
            window=window, system=system if system is not None else system_prompt_for(run, agent),
            pinned=pinned_ids(path, pins), earlier=getattr(path, "earlier", ()),
        ),
        budget=budget or agent_budget(run, agent), counter=counter or run_counter(run),
        compactions=compactions,
    )


def next_context(run: Run, *, agent: Agent | None | object = ..., system_override: str | None = None) -> dict:
    """The next context below ``run`` as the chat settings would make it, built and counted for real
    (:func:`measure_next` with the endpoint's token counter): ``agent`` (default ``run``'s) and
    ``system_override`` (empty: the agent's system prompt, else the default one). For the chat settings
    preview and Undo compaction (:func:`memory.selectors.next_context`, registered by ``engine.apps``).

    Returns ``{"totals": {part: tokens}, "tokens", "needed" (tokens before the budget cut),
    "usable_window", "counted_with", "not_seen": [sentence], "error": ""}``; when the fixed parts
    alone do not fit (:class:`ContextOverflow`) ``totals`` is empty and ``error`` says why."""
    if system_override:
        system = system_override
    elif agent is ...:
        system = None
    else:
        system = system_prompt_for(None, agent)
    try:
        built = measure_next(run, agent=agent, system=system)
    except ContextOverflow as exc:
        return {"totals": {}, "tokens": 0, "needed": 0, "usable_window": 0, "counted_with": "", "not_seen": [],
                "error": str(exc)}
    parts = built.parts()
    return {"totals": parts["totals"], "tokens": built.tokens, "needed": built.fixed_tokens + built.history_tokens,
            "usable_window": built.budget.usable, "counted_with": built.counted_with, "not_seen": parts["not_seen"],
            "error": ""}


def _history(sel: Selection, spec: ctx.ContextSpec, compaction: Compaction | None
             ) -> tuple[list[Message], dict, str | None]:
    """Rules 2–3: the ancestors' messages of this memory id, after the compaction (if any); fills
    the spec's summary (a reference) and start depth. Returns ``(history, replacements, summary
    message text or None)``."""
    history = [m for m in sel.ancestors if sel.memory_ids.get(m.run_id) == sel.memory_id and m.pk not in sel.pinned]
    if sel.window == 0:
        spec.from_depth = (max(m.run.depth for m in sel.ancestors) + 1) if sel.ancestors else 0
        return [], {}, None
    if compaction is None:
        return history, {}, None
    spec.compaction = compaction.pk
    covered = set(compaction.dropped)
    spec.from_depth = compaction.from_depth
    summary = None
    if compaction.summary:
        spec.summary, summary = ctx.summary_ref(compaction), SUMMARY_HEADER + compaction.summary
    history = [m for m in history if m.run.depth >= compaction.from_depth and m.pk not in covered]
    return history, dict(compaction.replaced), summary


def _window(units: list[list[Message]], window: int | None) -> tuple[list[list[Message]], int]:
    """Rule 4: the newest units holding at most ``window`` messages; returns ``(kept, dropped count)``."""
    if window is None or window <= 0:
        return units, 0
    kept: list[list[Message]] = []
    count = 0
    for unit in reversed(units):
        if count + len(unit) > window:
            break
        kept.append(unit)
        count += len(unit)
    kept.reverse()
    return kept, sum(len(u) for u in units[: len(units) - len(kept)])


def _fit(unit_tokens: list[int], available: int) -> tuple[int, int]:
    """Rule 5: the index of the oldest unit kept when the newest are kept first within
    ``available`` tokens, and the tokens they use."""
    kept_from, used = len(unit_tokens), 0
    for index in range(len(unit_tokens) - 1, -1, -1):
        if used + unit_tokens[index] > available:
            break
        used += unit_tokens[index]
        kept_from = index
    return kept_from, used


def _pin_names(pins: list[Message]) -> str:
    """“turn 3 (messages 12, 13), turn 9 (message 40)”: turn n is the run at depth n − 1."""
    by_turn: dict[int, list[int]] = {}
    for message in pins:
        by_turn.setdefault(message.run.depth + 1, []).append(message.pk)
    return ", ".join(f"turn {turn} (message{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))})"
                     for turn, ids in sorted(by_turn.items()))


def _fixed_tokens(sel: Selection, budget: Budget, counter: TokenCounter, pins: list[Message]) -> tuple[int, int]:
    """Tokens of what is always sent: ``(system prompt + the run's own messages + tail + primer,
    pinned messages)``; raises :class:`ContextOverflow` when they exceed the usable window (naming
    the pins, if any)."""
    fixed_messages = ([{"role": "system", "content": sel.system}] if sel.system else []) + \
        [m.as_openai() for m in sel.own] + sel.tail
    fixed = context_tokens(counter, fixed_messages)
    pin_tokens = sum(message_tokens(counter, m.as_openai()) for m in pins)
    if pins and fixed + pin_tokens > budget.usable:
        raise ContextOverflow(
            f"The pinned messages need {pin_tokens} tokens — {_pin_names(pins)} — and with the system prompt and "
            f"this run's own messages ({fixed} tokens) that is {fixed + pin_tokens - budget.usable} tokens over the "
            f"usable context window of {budget.usable} tokens. Nothing was dropped: unpin some of them or raise the "
            f"agent's context budget."
        )
    if fixed > budget.usable:
        raise ContextOverflow(
            f"The system prompt and this run's own messages need {fixed} tokens; the usable context window is "
            f"{budget.usable} tokens ({budget.context_window} − {budget.reserved_output} reserved for the answer)."
        )
    return fixed, pin_tokens


def _assemble(sel: Selection, *, budget: Budget, counter: TokenCounter,
              compactions: tuple[Compaction | None, bool]) -> BuiltContext:
    """Apply rules 2–5 to ``sel`` (see the module docstring) and express the result as a spec."""
    compaction, pending = compactions
    if sel.window == 0:
        compaction = None
    spec = ctx.ContextSpec(system=sel.system or None, own_upto=sel.own_upto, memory_id=sel.memory_id, tail=sel.tail)
    history, replaced, summary = _history(sel, spec, compaction)

    def as_sent(message: Message) -> dict:
        data = message.as_openai()
        if str(message.pk) in replaced and message.pk not in sel.pinned:
            data["content"] = replaced[str(message.pk)]
        return data

    pins = [m for m in sel.ancestors if m.pk in sel.pinned]
    units, unpaired = tool_units(history)
    units, window_dropped = _window(units, sel.window)
    fixed, pin_tokens = _fixed_tokens(sel, budget, counter, pins)
    fixed += pin_tokens
    summary_tokens = message_tokens(counter, {"role": "system", "content": summary}) if spec.summary else 0
    if spec.summary and fixed + summary_tokens > budget.usable:
        spec.summary, summary, summary_tokens = None, None, 0
    unit_tokens = [sum(message_tokens(counter, as_sent(m)) for m in unit) for unit in units]
    kept_from, used = _fit(unit_tokens, budget.usable - fixed - summary_tokens)
    kept = [m for unit in units[kept_from:] for m in unit]
    _describe_cut(spec, sel, kept, replaced)
    spec.pinned = sorted(m.pk for m in pins)
    sent = _in_path_order(sel.ancestors, kept, pins)
    messages = ctx.render_prefix(spec, summary) + [as_sent(m) for m in sent] + [m.as_openai() for m in sel.own] + \
        [dict(m) for m in sel.tail]
    return BuiltContext(
        spec=spec, messages=messages, tokens=fixed + summary_tokens + used, budget=budget,
        history_tokens=sum(unit_tokens) + summary_tokens, fixed_tokens=fixed, history_messages=len(kept),
        window_dropped=window_dropped, budget_dropped=sum(len(u) for u in units[:kept_from]),
        unpaired_dropped=len(unpaired), pending=pending, compaction=compaction, counted_with=counter.mode,
        kept_ids=sorted(m.pk for m in kept), pin_tokens=pin_tokens, counter=counter,
        labels=labels_of(spec, sel, sent), notes=not_seen(spec, sel, compaction),
    )


def _in_path_order(ancestors: list[Message], kept: list[Message], pins: list[Message]) -> list[Message]:
    if not pins:
        return kept
    chosen = {m.pk for m in kept} | {m.pk for m in pins}
    return [m for m in ancestors if m.pk in chosen]


def _describe_cut(spec: ctx.ContextSpec, sel: Selection, kept: list[Message], replaced: dict) -> None:
    """Express the cut as spec fields: whole turns before ``from_depth``; inside the kept range,
    every message of this memory id that is not sent is listed (window/budget boundary, unpaired,
    covered by a compaction); replacements only for messages sent. Pinned messages are the spec's
    ``pinned`` (set by the caller), never dropped."""
    kept_ids = {m.pk for m in kept}
    if kept:
        spec.from_depth = max(spec.from_depth, kept[0].run.depth)
    else:
        spec.from_depth = max([spec.from_depth] + [m.run.depth + 1 for m in sel.ancestors])
    spec.dropped = sorted(
        m.pk for m in sel.ancestors
        if sel.memory_ids.get(m.run_id) == sel.memory_id and m.run.depth >= spec.from_depth and m.pk not in kept_ids
        and m.pk not in sel.pinned
    )
    spec.replaced = {str(m.pk): replaced[str(m.pk)] for m in kept if str(m.pk) in replaced}
