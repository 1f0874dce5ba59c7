"""Template tags for memory in the chat: ``{% load memory_tags %}``.

- ``{% branch_meter session run %}``: the context-utilisation meter of the branch ending at ``run``
  (default: the session's active run) — tokens of its last model call's context ÷ usable window,
  the compaction threshold, and whether a compaction is pending or stands on the branch.
- ``{% summary_marker run %}``: where a compaction summary stands (after the run it is attached
  to), expandable to the summary text; nothing when the run has none. One query per page render
  (cached in the template's render context), not one per turn.
- ``{% tool_traffic run %}``: the run's tool calls and results, folded (``<details>``).

All output is escaped by the templates; numbers come from the stored steps, so rendering never
calls the model or its tokenizer. Pairing tool calls with results and finding a run's compactions
are :func:`conversations.selectors.paths.pair_tool_calls` and :func:`conversations.selectors.paths.compactions_by_run`
(the chat page uses them directly, through ``ChatTurn.tool_calls`` and ``paths.attach_compactions``).
"""

from __future__ import annotations

from django import template

from connections.selectors import find_model
from memory.models import Compaction, CompactionStatus
from memory.policy import budget_for, policy_for

from ..models import Message, Run, Step, StepKind
from ..selectors.paths import compactions_by_run, pair_tool_calls

register = template.Library()


def branch_meter_data(session, run: Run | None = None, models=None) -> dict:
    """The figures the meter shows (also usable from a view or the API).

    Returns ``{"run", "tokens", "usable", "utilisation" (0–1, may exceed 1 for a guess), "percent",
    "threshold", "compaction": Compaction | None (newest on the branch for the run's memory id),
    "pending": bool, "measured": bool}``; ``measured`` is False before the run's first model call
    (then ``tokens`` is 0, and the usable window is the budget as it stands: ``models``, the
    connections' models the page has read already, saves looking the model up).
    """
    if run is None and session is not None:
        run = session.active_run
    if run is None:
        return {"run": None, "measured": False}
    step = (Step.objects.filter(run=run, kind=StepKind.LLM_CALL).order_by("-started_at", "-id")
            .values("request", "completion_tokens").first())
    agent = run.agent
    tokens = 0
    if step is not None and step["request"].get("usable_window"):
        usable = int(step["request"]["usable_window"])
    else:  # no model call recorded its window yet: the budget as it stands
        known = {}
        if models is not None:
            entry = find_model(models, run.connection_id, run.model)
            known["known"] = entry.effective_context_window if entry is not None else None
        usable = budget_for(model=run.model, agent=agent, connection_id=run.connection_id, **known).usable
    if step is not None:
        tokens = int(step["request"].get("context_tokens") or 0) + int(step["completion_tokens"] or 0)
    compactions = list(
        Compaction.objects.filter(run__in=Run.objects.ancestor_of(run, inclusive=True), memory_id=run.memory_id)
        .order_by("-run__depth", "-id")[:5]
    )
    newest = compactions[0] if compactions else None
    utilisation = tokens / usable if usable else 0.0
    try:
        threshold = policy_for(agent).threshold
    except Exception:  # an invalid stored policy must not break the page
        threshold = None
    return {
        "run": run, "tokens": tokens, "usable": usable, "utilisation": utilisation,
        "percent": round(100 * utilisation), "threshold": threshold, "compaction": newest,
        "pending": any(c.status in (CompactionStatus.PENDING, CompactionStatus.RUNNING) for c in compactions),
        "measured": step is not None, "memory_id": run.memory_id,
    }


@register.inclusion_tag("memory/_branch_meter.html", takes_context=True)
def branch_meter(context, session, run=None):
    return branch_meter_data(session, run, models=context.get("models"))


@register.inclusion_tag("memory/_summary_marker.html", takes_context=True)
def summary_marker(context, run):
    """The compactions attached to ``run`` (normally one per memory id)."""
    cache = context.render_context.setdefault("memory_compactions", {})
    session_id = getattr(run, "session_id", None)
    if session_id not in cache:
        cache[session_id] = compactions_by_run(Run.objects.filter(session_id=session_id).values("pk"))
    return {"run": run, "compactions": cache[session_id].get(getattr(run, "pk", None), [])}


@register.inclusion_tag("memory/_tool_traffic.html")
def tool_traffic(run):
    """The run's tool calls (assistant messages with ``tool_calls``) and their results, in order."""
    messages = list(Message.objects.filter(run=run, position__gte=1).order_by("position"))
    return {"run": run, "calls": pair_tool_calls(messages)}
