"""An agent's memory policy: its token budget and its compaction policy, parsed and checked.

Functions of an :class:`~memory.models.Agent`, its model connection and the settings; the engine
applies them (:mod:`engine.context` builds within the budget, :mod:`engine.compaction` runs the policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError

from connections.selectors import context_window_of
from core.tokens import configured_context_window

if TYPE_CHECKING:
    from .models import Agent

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

@dataclass(frozen=True)
class Budget:
    """Token budget of one model call: ``usable = context_window − reserved_output`` (tokens)."""

    context_window: int
    reserved_output: int

    @property
    def usable(self) -> int:
        return max(0, self.context_window - self.reserved_output)


_AGENTS = object()  # "the agent's connection"
_UNREAD = object()  # "the connection's figure has not been read"


def context_window_for(model: str, agent: Agent | None = None, connection_id: int | None | object = _AGENTS, *,
                       known: int | None | object = _UNREAD) -> int:
    """Tokens of ``model``'s context window: the agent's own setting, else the figure of ``model``
    on the connection (``connection_id``; default: the agent's; None: the default connection) — set
    by hand or as its endpoint lists it — else ``settings.ARBOR_MODEL_CONTEXT_WINDOWS[model]``, else
    ``settings.ARBOR_DEFAULT_CONTEXT_WINDOW`` (:func:`connections.selectors.context_window_of`).
    ``known``: that connection's figure when the caller has read it already (None: it has none)."""
    if agent is not None and agent.context_window:
        return agent.context_window
    if known is not _UNREAD:
        return known or configured_context_window(model)
    if connection_id is _AGENTS:
        connection_id = agent.connection_id if agent is not None else None
    return context_window_of(connection_id, model)


def budget_for(*, model: str, agent: Agent | None = None, connection_id: int | None | object = _AGENTS,
               known: int | None | object = _UNREAD) -> Budget:
    """The budget of a call of ``model`` by ``agent`` on a connection (see :func:`context_window_for`)."""
    reserved = agent.reserved_output_tokens if agent is not None else settings.ARBOR_RESERVED_OUTPUT_TOKENS
    window = context_window_for(model, agent, connection_id, known=known)
    return Budget(context_window=window, reserved_output=min(reserved, window))


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
            s.setdefault("connection", "")
            s.setdefault("prompt", DEFAULT_SUMMARY_PROMPT)
            if not isinstance(s["connection"], str) or len(s["connection"]) > 100:
                raise ValidationError("summarize connection must be a connection's name (or empty: the agent's)")
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


