"""What a context is made of and what it leaves out: token counts per message, the built context
with its accounting (:class:`BuiltContext`), the part each message sent plays and the plain
sentences about what the model was not sent. :mod:`engine.context` builds; this module describes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from conversations import context_spec as ctx
from conversations.models import Message, Role
from core.tokens import REPLY_PRIMING, TokenCounter, counter_for, overhead_for
from memory.models import Compaction
from memory.policy import Budget


def message_tokens(counter: TokenCounter, data: dict) -> int:
    """Tokens one OpenAI-format message adds to a context (content, tool calls, template overhead)."""
    tokens = overhead_for(data.get("role")) + counter.count(data.get("content") or "")
    if data.get("tool_calls"):
        tokens += counter.count(json.dumps(data["tool_calls"]))
    return tokens


def context_tokens(counter: TokenCounter, messages: list[dict]) -> int:
    """Tokens of a whole context as sent: its messages plus the reply primer."""
    return REPLY_PRIMING + sum(message_tokens(counter, m) for m in messages)


@dataclass
class BuiltContext:
    """A context ready to send, with its accounting.

    ``tokens``: the context as counted; ``budget``: the window it had to fit; ``history_tokens``:
    tokens of the history the rules selected *before* the budget cut (what utilisation measures);
    ``budget_dropped``: history messages the budget left out; ``pending``: a compaction on the
    path is not ready yet (this context fell back to truncation).
    """

    spec: ctx.ContextSpec
    messages: list[dict]
    tokens: int
    budget: Budget
    history_tokens: int = 0
    fixed_tokens: int = 0
    history_messages: int = 0
    window_dropped: int = 0
    budget_dropped: int = 0
    unpaired_dropped: int = 0
    pending: bool = False
    compaction: Compaction | None = None
    counted_with: str = ""
    kept_ids: list[int] = field(default_factory=list)
    pin_tokens: int = 0
    labels: list[str] = field(default_factory=list)
    counter: TokenCounter | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def utilisation(self) -> float:
        """Tokens of the context ÷ usable window (0 when the window is 0)."""
        return self.tokens / self.budget.usable if self.budget.usable else 0.0

    @property
    def full_utilisation(self) -> float:
        """Tokens the selected history would need without the budget cut ÷ usable window."""
        usable = self.budget.usable
        return (self.fixed_tokens + self.history_tokens) / usable if usable else 0.0

    def describe(self) -> dict:
        """The build's accounting (JSON), stored in the first model call's request under ``build``
        (a ``context`` step only when the build failed)."""
        return {
            "context_tokens": self.tokens, "usable_window": self.budget.usable,
            "context_window": self.budget.context_window,
            "reserved_output": self.budget.reserved_output, "utilisation": round(self.utilisation, 4),
            "history_messages": self.history_messages, "window_dropped": self.window_dropped,
            "budget_dropped": self.budget_dropped, "unpaired_dropped": self.unpaired_dropped,
            "compaction_pending": self.pending, "compaction": self.compaction.pk if self.compaction else None,
            "counted_with": self.counted_with, "pin_tokens": self.pin_tokens, "pinned": len(self.spec.pinned),
        }

    def parts(self) -> dict:
        """What was sent, part by part (stored with each model call; shown as "what the model saw").

        ``{"messages": [{"part", "message_tokens"}] (one per message sent, in order; not named
        ``tokens``, which stored step requests mask as a secret), "totals": {part:
        tokens}, "not_seen": [sentence]}``. Parts: ``system``, ``summary``, ``pin``, ``memory`` (a
        pinned message of another memory id than the one built for), ``history``
        (the window), ``tool`` (tool calls and results), ``input`` (the run's own input), ``tail``
        (a nested agent's prompt). Tokens as :func:`message_tokens` counts them (the reply primer,
        :data:`core.tokens.REPLY_PRIMING`, is in ``totals["primer"]``).
        """
        counter = self.counter or counter_for("")
        rows = [{"part": label, "message_tokens": message_tokens(counter, message)}
                for label, message in zip(self.labels, self.messages, strict=True)]
        totals: dict[str, int] = {}
        for row in rows:
            totals[row["part"]] = totals.get(row["part"], 0) + row["message_tokens"]
        totals["primer"] = REPLY_PRIMING
        return {"messages": rows, "totals": totals, "not_seen": list(self.notes)}


@dataclass
class Selection:
    """The inputs of one context: the path split into ancestors and the run's own messages, the
    memory id being built for and the memory ids of the path's runs, the window and system prompt."""

    ancestors: list[Message]
    own: list[Message]
    own_upto: int
    tail: list[dict]
    memory_id: str
    memory_ids: dict
    window: int | None
    system: str
    pinned: set[int] = field(default_factory=set)
    earlier: tuple = ()  # (memory_id, depth) of ancestors whose messages were not read (none pinned)


def labels_of(spec: ctx.ContextSpec, sel: Selection, sent: list[Message]) -> list[str]:
    """The part of each message sent (see :meth:`BuiltContext.parts`), in order."""
    labels = (["system"] if spec.system else []) + (["summary"] if spec.summary else [])
    for message in sent:
        if sel.memory_ids.get(message.run_id) != sel.memory_id:
            labels.append("memory")  # only a pin crosses memory ids
        elif message.pk in sel.pinned:
            labels.append("pin")
        elif message.role == Role.TOOL or message.tool_calls:
            labels.append("tool")
        else:
            labels.append("history")
    labels += ["tool" if m.role == Role.TOOL or m.tool_calls else "input" for m in sel.own]
    return labels + ["tail"] * len(sel.tail)


def _turn_ranges(depths: set[int]) -> str:
    """“turns 1–40, 43” for the runs at these depths (turn n is depth n − 1)."""
    ranges: list[list[int]] = []
    for depth in sorted(depths):
        if ranges and depth == ranges[-1][1] + 1:
            ranges[-1][1] = depth
        else:
            ranges.append([depth, depth])
    text = ", ".join(f"{a + 1}" if a == b else f"{a + 1}–{b + 1}" for a, b in ranges)
    return ("turn " if len(depths) == 1 else "turns ") + text


def not_seen(spec: ctx.ContextSpec, sel: Selection, compaction: Compaction | None) -> list[str]:
    """Plain sentences: what the path to this run holds that the model was not sent (or not word for word)."""
    notes: list[str] = []
    # (memory id, depth) of every ancestor with a message not pinned: those read, and those whose
    # messages were not read (above a compaction's start; each run has its input message).
    runs = [(sel.memory_ids.get(m.run_id), m.run.depth) for m in sel.ancestors if m.pk not in sel.pinned]
    runs += sel.earlier
    other = [(memory_id, depth) for memory_id, depth in runs if memory_id != sel.memory_id]
    mine = {depth for memory_id, depth in runs if memory_id == sel.memory_id}
    summarised = {depth for depth in mine if spec.summary and depth < compaction.from_depth}
    if summarised:
        notes.append(f"{_turn_ranges(summarised).capitalize()} were summarised (summary {spec.summary['id']}): "
                     "the model saw the summary, not the turns.")
    left_out = {depth for depth in mine if depth < spec.from_depth} - summarised
    if left_out:
        notes.append(f"{_turn_ranges(left_out).capitalize()} were left out (memory window, context budget or "
                     "compaction).")
    if spec.dropped:
        notes.append(f"{len(spec.dropped)} message(s) of the later turns were left out (the window or budget cut "
                     "inside a turn, or an unfinished tool call).")
    if spec.replaced:
        notes.append(f"{len(spec.replaced)} tool result(s) were sent shortened by compaction.")
    if other:
        ids = sorted({memory_id or "" for memory_id, _ in other})
        notes.append(f"{_turn_ranges({depth for _, depth in other}).capitalize()} belong to another memory id "
                     f"({', '.join(ids)}) and were not included.")
    notes.append(ctx.OTHER_BRANCHES_NOTE)
    return notes
