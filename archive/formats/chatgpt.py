"""ChatGPT data export: ``conversations.json``, a list of conversations whose ``mapping`` holds
nodes ``{id, message, parent, children}``; ``message`` has ``author.role``, ``content``
(``content_type`` + ``parts``/``text``/...), ``create_time`` (epoch seconds), ``recipient`` (a tool
name for a tool call) and ``metadata.model_slug``. ``current_node`` is the leaf on screen.
"""

from __future__ import annotations

from collections import Counter

from ..drafts import (
    ConversationDraft,
    MessageDraft,
    Skip,
    parse_time,
    repair_json,
    repair_text,
    short,
    title_from,
)
from ..mapping import MessageNode, runs_from_tree
from .common import ROLES, warn_counts

_FINISH = {"stop": "stop", "max_tokens": "length", "interrupted": "interrupted"}


def _chatgpt_parts(parts, counts: Counter, attachments: list) -> str:
    texts: list[str] = []
    for part in parts if isinstance(parts, list) else [parts]:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            kind = str(part.get("content_type") or "part")
            if kind == "audio_transcription" and isinstance(part.get("text"), str):
                texts.append(part["text"])
                continue
            counts["non_text_part"] += 1
            attachments.append(repair_json(part))
            pointer = part.get("asset_pointer") or part.get("name") or ""
            texts.append(f"[{kind.replace('_asset_pointer', '')}{': ' + str(pointer) if pointer else ''}]")
        elif part is not None:
            texts.append(str(part))
    return "\n\n".join(t for t in texts if t) if len(texts) > 1 else (texts[0] if texts else "")


def _chatgpt_quote(content: dict) -> str:
    head = " ".join(str(content.get(k) or "") for k in ("title", "url")).strip()
    return f"{head}\n\n{content.get('text') or ''}".strip()


def _chatgpt_thoughts(content: dict) -> str:
    thoughts = content.get("thoughts") or []
    return "\n\n".join(
        "\n".join(str(t.get(k) or "") for k in ("summary", "content") if t.get(k))
        for t in thoughts if isinstance(t, dict)
    )


# ChatGPT content types whose text is read from their own fields (no attachments, no metadata).
_CHATGPT_FIELD_TEXT = {
    "tether_browsing_display": lambda c: str(c.get("result") or c.get("summary") or ""),
    "tether_quote": _chatgpt_quote,
    "thoughts": _chatgpt_thoughts,
    "reasoning_recap": lambda c: str(c.get("content") or ""),
    "user_editable_context": lambda c: "\n\n".join(
        str(c.get(k)) for k in ("user_profile", "user_instructions") if c.get(k)),
    "model_editable_context": lambda c: str(c.get("model_set_context") or ""),
}


def _chatgpt_unknown(kind: str, content: dict, counts: Counter, attachments: list, metadata: dict) -> str:
    """A content type this reader does not know: counted, kept whole in the metadata, and its text
    taken from the first field that holds one."""
    counts["unknown_type"] += 1
    metadata["raw_content"] = repair_json(content)
    for key in ("text", "result", "content"):
        if isinstance(content.get(key), str):
            return content[key]
    if isinstance(content.get("parts"), list):
        return _chatgpt_parts(content["parts"], counts, attachments)
    return f"[{kind}]"


def _chatgpt_text(content: dict, counts: Counter, attachments: list, metadata: dict) -> str:
    kind = content.get("content_type") or "text"
    if kind in ("text", "multimodal_text"):
        return _chatgpt_parts(content.get("parts") or [], counts, attachments)
    if kind in ("code", "execution_output", "system_error"):
        if content.get("language") and content["language"] != "unknown":
            metadata["language"] = repair_text(content["language"])
        return str(content.get("text") or "")
    if kind in _CHATGPT_FIELD_TEXT:
        return _CHATGPT_FIELD_TEXT[kind](content)
    return _chatgpt_unknown(kind, content, counts, attachments, metadata)


def _chatgpt_message(msg, counts: Counter) -> MessageDraft | None:
    if not isinstance(msg, dict):
        return None
    author = msg.get("author") if isinstance(msg.get("author"), dict) else {}
    role = str(author.get("role") or "")
    content = msg.get("content") if isinstance(msg.get("content"), dict) else {"content_type": "text", "parts": []}
    meta_src = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
    kind = str(content.get("content_type") or "text")
    metadata: dict = {}
    attachments: list = []
    text = repair_text(_chatgpt_text(content, counts, attachments, metadata))
    if kind in ("user_editable_context", "model_editable_context"):
        role = "system"
    if role not in ROLES:
        counts["unknown_role"] += 1
        metadata["author_role"] = repair_text(role)
        role = "assistant"
    recipient = str(msg.get("recipient") or "all")
    tool_calls = None
    if role == "assistant" and recipient != "all":
        call_id = repair_text(msg.get("id") or "call")[:100]
        tool_calls = [
            {"id": call_id, "type": "function", "function": {"name": repair_text(recipient), "arguments": text}},
        ]
        text = ""
    hidden = bool(meta_src.get("is_visually_hidden_from_conversation"))
    if not text.strip() and not tool_calls and not attachments and (role != "user" or hidden):
        counts["empty"] += 1
        return None
    if msg.get("id"):
        metadata["source_id"] = repair_text(msg["id"])
    if kind != "text":
        metadata["content_type"] = repair_text(kind)
    if hidden:
        metadata["hidden"] = True
    if attachments:
        metadata["attachments"] = attachments
    model = repair_text(meta_src.get("model_slug") or "")[:200]
    if model:
        metadata["model"] = model
    finish = meta_src.get("finish_details") if isinstance(meta_src.get("finish_details"), dict) else {}
    return MessageDraft(
        role=role, content=text, name=repair_text(author.get("name") or "")[:100] if role == "tool" else "",
        tool_calls=tool_calls, metadata=metadata, created_at=parse_time(msg.get("create_time")),
        model=model,
        finish_reason=_FINISH.get(str(finish.get("type") or ""), repair_text(finish.get("type") or "")[:32]),
    )


def convert(record) -> ConversationDraft:
    """A ChatGPT conversation (an element of ``conversations.json``)."""
    if not isinstance(record, dict):
        raise Skip("not a conversation object")
    mapping = record.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise Skip("the conversation has no mapping of messages")
    counts: Counter = Counter()
    nodes: dict[str, MessageNode] = {}
    for key, raw in mapping.items():
        if not isinstance(raw, dict):
            counts["bad_node"] += 1
            continue
        parent = raw.get("parent")
        children = raw.get("children") if isinstance(raw.get("children"), list) else []
        nodes[str(key)] = MessageNode(
            id=str(key), parent=None if parent is None else str(parent),
            children=[str(c) for c in children], message=_chatgpt_message(raw.get("message"), counts),
        )
    for node in nodes.values():  # a tool result answers the tool call it hangs under
        message = node.message
        if message is not None and message.role == "tool" and node.parent in nodes:
            call = nodes[node.parent].message
            if call is not None and call.tool_calls:
                message.tool_call_id = call.tool_calls[0]["id"]
    warnings: list[str] = []
    warn_counts(counts, warnings)
    created = parse_time(record.get("create_time"))
    runs, active = runs_from_tree(
        nodes, current=None if record.get("current_node") is None else str(record.get("current_node")),
        default_model=repair_text(record.get("default_model_slug") or "unknown")[:200], default_time=created,
        warnings=warnings,
    )
    return ConversationDraft(
        source_format="chatgpt", source_id=repair_text(record.get("conversation_id") or record.get("id") or "")[:200],
        title=short(repair_text(record.get("title") or "").strip(), 200) or title_from(runs), runs=runs, active=active,
        created_at=created, updated_at=parse_time(record.get("update_time")), warnings=warnings,
    )

