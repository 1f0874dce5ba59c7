"""ShareGPT: ``{id, conversations: [{from, value}, ...]}`` with speakers human/user, gpt/assistant/
chatgpt/bing/bard/model, system, and tool/function/observation (a straight line of messages).
"""

from __future__ import annotations

from collections import Counter

from ..drafts import (
    ConversationDraft,
    MessageDraft,
    Skip,
    repair_text,
    short,
    title_from,
)
from ..mapping import MessageNode, runs_from_tree
from .common import warn_counts

SHAREGPT_ROLES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "model": "assistant", "claude": "assistant", "function_call": "assistant",
    "system": "system",
    "tool": "tool", "function": "tool", "function_response": "tool", "observation": "tool", "ipython": "tool",
}
_NAMED_MODELS = {"chatgpt", "bing", "bard", "claude"}


def convert(record) -> ConversationDraft:
    """A ShareGPT record ``{id, conversations: [{from, value}]}`` (a straight line of messages)."""
    if not isinstance(record, dict):
        raise Skip("not a conversation object")
    turns = record.get("conversations")
    if turns is None:
        turns = record.get("items")
    if not isinstance(turns, list):
        raise Skip("no 'conversations' list")
    model_default = repair_text(record.get("model") or "")[:200]
    counts: Counter = Counter()
    nodes: dict[str, MessageNode] = {}
    previous = last_kept = None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise Skip(f"message {i} is not an object")
        speaker = turn.get("from", turn.get("role"))
        role = SHAREGPT_ROLES.get(str(speaker).strip().lower()) if speaker is not None else None
        if role is None:
            raise Skip(f"message {i} has an unknown speaker {str(speaker)[:40]!r}")
        value = turn.get("value", turn.get("content"))
        text = repair_text(value)
        if not text.strip() and role != "user":
            counts["empty"] += 1
            message = None
        else:
            speaker = str(speaker)
            model = model_default or (speaker.lower() if speaker.lower() in _NAMED_MODELS else "")
            message = MessageDraft(role=role, content=text, metadata={"from": repair_text(speaker)[:40]},
                                   model=model if role == "assistant" else "")
        key = str(i)
        nodes[key] = MessageNode(id=key, parent=previous, message=message)
        previous = key
        if message is not None:
            last_kept = key
    warnings: list[str] = []
    warn_counts(counts, warnings)
    runs, active = runs_from_tree(nodes, current=last_kept, default_model=model_default or "unknown", warnings=warnings)
    title = repair_text(record.get("title") or "").strip()
    return ConversationDraft(
        source_format="sharegpt", source_id=repair_text(record.get("id") or "")[:200],
        title=short(title, 200) if title else title_from(runs), runs=runs, active=active, warnings=warnings,
    )

