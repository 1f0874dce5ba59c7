"""Open WebUI: a chat ``{id, title, chat: {history: {messages: {id: {parentId, childrenIds, role,
content, model, timestamp, usage}}, currentId}, params: {system}}, created_at, updated_at}``, or a
list of them ("Export all chats"); an older chat keeps a straight ``messages`` list instead.
"""

from __future__ import annotations

from collections import Counter

from ..drafts import (
    ConversationDraft,
    MessageDraft,
    Skip,
    clean_int,
    parse_time,
    repair_json,
    repair_text,
    short,
    title_from,
)
from ..mapping import MessageNode, runs_from_tree
from .common import ROLES, warn_counts


def _openwebui_content(content, counts: Counter, attachments: list) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text") or ""))
            elif isinstance(part, str):
                texts.append(part)
            elif part is not None:
                counts["non_text_part"] += 1
                attachments.append(repair_json(part))
                texts.append(f"[{part.get('type', 'part') if isinstance(part, dict) else 'part'}]")
        return "\n\n".join(texts)
    return "" if content is None else str(content)


def _openwebui_usage(m: dict) -> dict | None:
    usage = m.get("usage") if isinstance(m.get("usage"), dict) else None
    if usage:
        return {
            "prompt_tokens": clean_int(usage.get("prompt_tokens")),
            "completion_tokens": clean_int(usage.get("completion_tokens")),
        }
    info = m.get("info") if isinstance(m.get("info"), dict) else None
    if info and ("prompt_eval_count" in info or "eval_count" in info):  # Ollama's counters
        return {
            "prompt_tokens": clean_int(info.get("prompt_eval_count")),
            "completion_tokens": clean_int(info.get("eval_count")),
        }
    return None


def _openwebui_message(key, m: dict, counts: Counter) -> MessageDraft | None:
    """The draft of one Open WebUI message (None for an empty non-user message, counted in ``counts``)."""
    role = str(m.get("role") or "")
    metadata: dict = {}
    if role not in ROLES:
        counts["unknown_role"] += 1
        metadata["author_role"] = repair_text(role)
        role = "assistant"
    attachments: list = []
    text = repair_text(_openwebui_content(m.get("content"), counts, attachments))
    if isinstance(m.get("files"), list) and m["files"]:
        attachments.extend(repair_json(m["files"]))
    if m.get("error"):
        metadata["error"] = repair_json(m["error"])
    if not text.strip() and not attachments and role != "user" and not m.get("error"):
        counts["empty"] += 1
        return None
    metadata["source_id"] = repair_text(key)
    if attachments:
        metadata["attachments"] = attachments
    model = repair_text(m.get("model") or "")[:200]
    if model:
        metadata["model"] = model
    if m.get("done") is False:
        metadata["partial"] = True
    usage = _openwebui_usage(m)
    return MessageDraft(
        role=role, content=text, metadata=metadata, created_at=parse_time(m.get("timestamp")),
        model=model if role == "assistant" else "", usage=usage,
        finish_reason="stop" if role == "assistant" and m.get("done", True) else "",
    )


def convert(record) -> ConversationDraft:
    """An Open WebUI chat (the export's wrapper with ``chat``, or the ``chat`` object itself)."""
    if not isinstance(record, dict):
        raise Skip("not a chat object")
    chat = record["chat"] if isinstance(record.get("chat"), dict) else record
    history = chat.get("history") if isinstance(chat.get("history"), dict) else {}
    messages = history.get("messages")
    counts: Counter = Counter()
    nodes: dict[str, MessageNode] = {}
    if not isinstance(messages, dict) or not messages:
        linear = chat.get("messages")
        if not isinstance(linear, list) and not isinstance(history.get("messages"), dict):
            raise Skip("the chat has no history.messages")
        messages, previous = {}, None
        for i, m in enumerate(linear or []):
            if isinstance(m, dict):
                key = str(m.get("id") or i)
                messages[key] = {**m, "parentId": m.get("parentId", previous), "childrenIds": m.get("childrenIds", [])}
                previous = key
    default_model = ""
    if isinstance(chat.get("models"), list) and chat["models"]:
        default_model = repair_text(chat["models"][0])[:200]
    for key, m in messages.items():
        if not isinstance(m, dict):
            counts["bad_node"] += 1
            continue
        message = _openwebui_message(key, m, counts)
        parent = m.get("parentId")
        children = m.get("childrenIds") if isinstance(m.get("childrenIds"), list) else []
        nodes[str(key)] = MessageNode(id=str(key), parent=None if parent is None else str(parent),
                                      children=[str(c) for c in children], message=message)
    params = chat.get("params") if isinstance(chat.get("params"), dict) else {}
    system = repair_text(chat.get("system") or params.get("system") or "")
    if system.strip():
        root = "\x00system"
        for node in nodes.values():
            if node.parent is None or node.parent not in nodes:
                node.parent = root
        nodes[root] = MessageNode(id=root, parent=None, message=MessageDraft(role="system", content=system))
    warnings: list[str] = []
    warn_counts(counts, warnings)
    created = parse_time(record.get("created_at") or chat.get("timestamp"))
    runs, active = runs_from_tree(
        nodes, current=None if history.get("currentId") is None else str(history["currentId"]),
        default_model=default_model or "unknown", default_time=created, warnings=warnings,
    )
    title = repair_text(record.get("title") or chat.get("title") or "").strip()
    return ConversationDraft(
        source_format="openwebui", source_id=repair_text(record.get("id") or chat.get("id") or "")[:200],
        title=short(title, 200) if title and title != "New Chat" else title_from(runs), runs=runs, active=active,
        created_at=created, updated_at=parse_time(record.get("updated_at")), warnings=warnings,
    )

