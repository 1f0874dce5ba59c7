"""One converter per source format: a parsed record → :class:`~archive.drafts.ConversationDraft`.

Converters raise :class:`~archive.drafts.Skip` with a readable reason for a record they cannot
import; what they repair (a missing parent, an unknown content type, an empty message) goes into the
draft's ``warnings``. Sources of the formats:

* ChatGPT data export: ``conversations.json``, a list of conversations whose ``mapping`` holds
  nodes ``{id, message, parent, children}``; ``message`` has ``author.role``, ``content``
  (``content_type`` + ``parts``/``text``/...), ``create_time`` (epoch seconds), ``recipient`` (a tool
  name for a tool call) and ``metadata.model_slug``. ``current_node`` is the leaf on screen.
* Open WebUI: a chat ``{id, title, chat: {history: {messages: {id: {parentId, childrenIds, role,
  content, model, timestamp, usage}}, currentId}, params: {system}}, created_at, updated_at}``, or
  a list of them ("Export all chats").
* ShareGPT: ``{id, conversations: [{from, value}, ...]}`` with speakers human/user, gpt/assistant/
  chatgpt/bing/bard/model, system, and tool/function/observation.
* Arbor JSON (written by :mod:`archive.exporters`): ``{arbor: 1, id, title, active_run_id,
  runs: [{run_id, parent_run_id, model, params, usage, timings, messages: [...]}]}``, optionally
  with ``forked_from_run_id`` (a fork of a session earlier in the same file), ``compactions``
  (:mod:`archive.compactions`) and other apps' sections (``comparisons``).
* Arbor JSON Lines: one run per line (see :mod:`archive.exporters`), grouped by ``session_id``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from .compactions import compaction_drafts
from .drafts import (
    ConversationDraft,
    MessageDraft,
    RunDraft,
    Skip,
    clean_int,
    clean_json,
    clean_text,
    parse_time,
    short,
    title_from,
)
from .mapping import Node, runs_from_tree

FORMATS = ("chatgpt", "openwebui", "sharegpt", "arbor", "jsonl")
RUN_FORMAT = "arbor.run/1"  # the ``format`` of a JSON Lines run snapshot (see archive.exporters)
ROLES = {"system", "user", "assistant", "tool"}


def detect(record) -> str | None:
    """The format of a parsed record, or None when it looks like none of them."""
    if not isinstance(record, dict):
        return None
    if "arbor" in record and "runs" in record:
        return "arbor"
    if "run_id" in record:
        return "jsonl"
    if "mapping" in record:
        return "chatgpt"
    if isinstance(record.get("chat"), dict) or isinstance(record.get("history"), dict):
        return "openwebui"
    if isinstance(record.get("conversations"), list) or isinstance(record.get("items"), list):
        return "sharegpt"
    return None


def _warn_counts(counts: Counter, warnings: list[str]) -> None:
    texts = {
        "empty": "{n} empty message(s) dropped",
        "unknown_type": "{n} message(s) of an unknown content type kept as text with the raw content in metadata",
        "unknown_role": "{n} message(s) with an unknown author role imported as assistant messages",
        "bad_node": "{n} node(s) that are not objects ignored",
        "non_text_part": "{n} non-text part(s) (images, audio, files) kept as placeholders with details in metadata",
    }
    for key, n in counts.items():
        if n and key in texts:
            warnings.append(texts[key].format(n=n))


# --- ChatGPT ----------------------------------------------------------------------------------------

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
            attachments.append(clean_json(part))
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
    metadata["raw_content"] = clean_json(content)
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
            metadata["language"] = clean_text(content["language"])
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
    text = clean_text(_chatgpt_text(content, counts, attachments, metadata))
    if kind in ("user_editable_context", "model_editable_context"):
        role = "system"
    if role not in ROLES:
        counts["unknown_role"] += 1
        metadata["author_role"] = clean_text(role)
        role = "assistant"
    recipient = str(msg.get("recipient") or "all")
    tool_calls = None
    if role == "assistant" and recipient != "all":
        call_id = clean_text(msg.get("id") or "call")[:100]
        tool_calls = [
            {"id": call_id, "type": "function", "function": {"name": clean_text(recipient), "arguments": text}},
        ]
        text = ""
    hidden = bool(meta_src.get("is_visually_hidden_from_conversation"))
    if not text.strip() and not tool_calls and not attachments and (role != "user" or hidden):
        counts["empty"] += 1
        return None
    if msg.get("id"):
        metadata["source_id"] = clean_text(msg["id"])
    if kind != "text":
        metadata["content_type"] = clean_text(kind)
    if hidden:
        metadata["hidden"] = True
    if attachments:
        metadata["attachments"] = attachments
    model = clean_text(meta_src.get("model_slug") or "")[:200]
    if model:
        metadata["model"] = model
    finish = meta_src.get("finish_details") if isinstance(meta_src.get("finish_details"), dict) else {}
    return MessageDraft(
        role=role, content=text, name=clean_text(author.get("name") or "")[:100] if role == "tool" else "",
        tool_calls=tool_calls, metadata=metadata, created_at=parse_time(msg.get("create_time")),
        model=model,
        finish_reason=_FINISH.get(str(finish.get("type") or ""), clean_text(finish.get("type") or "")[:32]),
    )


def chatgpt(record) -> ConversationDraft:
    """A ChatGPT conversation (an element of ``conversations.json``)."""
    if not isinstance(record, dict):
        raise Skip("not a conversation object")
    mapping = record.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise Skip("the conversation has no mapping of messages")
    counts: Counter = Counter()
    nodes: dict[str, Node] = {}
    for key, raw in mapping.items():
        if not isinstance(raw, dict):
            counts["bad_node"] += 1
            continue
        parent = raw.get("parent")
        children = raw.get("children") if isinstance(raw.get("children"), list) else []
        nodes[str(key)] = Node(
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
    _warn_counts(counts, warnings)
    created = parse_time(record.get("create_time"))
    runs, active = runs_from_tree(
        nodes, current=None if record.get("current_node") is None else str(record.get("current_node")),
        default_model=clean_text(record.get("default_model_slug") or "unknown")[:200], default_time=created,
        warnings=warnings,
    )
    return ConversationDraft(
        source_format="chatgpt", source_id=clean_text(record.get("conversation_id") or record.get("id") or "")[:200],
        title=short(clean_text(record.get("title") or "").strip(), 200) or title_from(runs), runs=runs, active=active,
        created_at=created, updated_at=parse_time(record.get("update_time")), warnings=warnings,
    )


# --- Open WebUI -------------------------------------------------------------------------------------

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
                attachments.append(clean_json(part))
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
        metadata["author_role"] = clean_text(role)
        role = "assistant"
    attachments: list = []
    text = clean_text(_openwebui_content(m.get("content"), counts, attachments))
    if isinstance(m.get("files"), list) and m["files"]:
        attachments.extend(clean_json(m["files"]))
    if m.get("error"):
        metadata["error"] = clean_json(m["error"])
    if not text.strip() and not attachments and role != "user" and not m.get("error"):
        counts["empty"] += 1
        return None
    metadata["source_id"] = clean_text(key)
    if attachments:
        metadata["attachments"] = attachments
    model = clean_text(m.get("model") or "")[:200]
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


def openwebui(record) -> ConversationDraft:
    """An Open WebUI chat (the export's wrapper with ``chat``, or the ``chat`` object itself)."""
    if not isinstance(record, dict):
        raise Skip("not a chat object")
    chat = record["chat"] if isinstance(record.get("chat"), dict) else record
    history = chat.get("history") if isinstance(chat.get("history"), dict) else {}
    messages = history.get("messages")
    counts: Counter = Counter()
    nodes: dict[str, Node] = {}
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
        default_model = clean_text(chat["models"][0])[:200]
    for key, m in messages.items():
        if not isinstance(m, dict):
            counts["bad_node"] += 1
            continue
        message = _openwebui_message(key, m, counts)
        parent = m.get("parentId")
        children = m.get("childrenIds") if isinstance(m.get("childrenIds"), list) else []
        nodes[str(key)] = Node(id=str(key), parent=None if parent is None else str(parent),
                               children=[str(c) for c in children], message=message)
    params = chat.get("params") if isinstance(chat.get("params"), dict) else {}
    system = clean_text(chat.get("system") or params.get("system") or "")
    if system.strip():
        root = "\x00system"
        for node in nodes.values():
            if node.parent is None or node.parent not in nodes:
                node.parent = root
        nodes[root] = Node(id=root, parent=None, message=MessageDraft(role="system", content=system))
    warnings: list[str] = []
    _warn_counts(counts, warnings)
    created = parse_time(record.get("created_at") or chat.get("timestamp"))
    runs, active = runs_from_tree(
        nodes, current=None if history.get("currentId") is None else str(history["currentId"]),
        default_model=default_model or "unknown", default_time=created, warnings=warnings,
    )
    title = clean_text(record.get("title") or chat.get("title") or "").strip()
    return ConversationDraft(
        source_format="openwebui", source_id=clean_text(record.get("id") or chat.get("id") or "")[:200],
        title=short(title, 200) if title and title != "New Chat" else title_from(runs), runs=runs, active=active,
        created_at=created, updated_at=parse_time(record.get("updated_at")), warnings=warnings,
    )


# --- ShareGPT ---------------------------------------------------------------------------------------

SHAREGPT_ROLES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "model": "assistant", "claude": "assistant", "function_call": "assistant",
    "system": "system",
    "tool": "tool", "function": "tool", "function_response": "tool", "observation": "tool", "ipython": "tool",
}
_NAMED_MODELS = {"chatgpt", "bing", "bard", "claude"}


def sharegpt(record) -> ConversationDraft:
    """A ShareGPT record ``{id, conversations: [{from, value}]}`` (a straight line of messages)."""
    if not isinstance(record, dict):
        raise Skip("not a conversation object")
    turns = record.get("conversations")
    if turns is None:
        turns = record.get("items")
    if not isinstance(turns, list):
        raise Skip("no 'conversations' list")
    model_default = clean_text(record.get("model") or "")[:200]
    counts: Counter = Counter()
    nodes: dict[str, Node] = {}
    previous = last_kept = None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise Skip(f"message {i} is not an object")
        speaker = turn.get("from", turn.get("role"))
        role = SHAREGPT_ROLES.get(str(speaker).strip().lower()) if speaker is not None else None
        if role is None:
            raise Skip(f"message {i} has an unknown speaker {str(speaker)[:40]!r}")
        value = turn.get("value", turn.get("content"))
        text = clean_text(value)
        if not text.strip() and role != "user":
            counts["empty"] += 1
            message = None
        else:
            speaker = str(speaker)
            model = model_default or (speaker.lower() if speaker.lower() in _NAMED_MODELS else "")
            message = MessageDraft(role=role, content=text, metadata={"from": clean_text(speaker)[:40]},
                                   model=model if role == "assistant" else "")
        key = str(i)
        nodes[key] = Node(id=key, parent=previous, message=message)
        previous = key
        if message is not None:
            last_kept = key
    warnings: list[str] = []
    _warn_counts(counts, warnings)
    runs, active = runs_from_tree(nodes, current=last_kept, default_model=model_default or "unknown", warnings=warnings)
    title = clean_text(record.get("title") or "").strip()
    return ConversationDraft(
        source_format="sharegpt", source_id=clean_text(record.get("id") or "")[:200],
        title=short(title, 200) if title else title_from(runs), runs=runs, active=active, warnings=warnings,
    )


# --- Arbor JSON and JSON Lines ----------------------------------------------------------------------

_FINISHED = {"succeeded", "failed", "cancelled"}


def _arbor_message(i: int, m) -> MessageDraft:
    if not isinstance(m, dict):
        raise Skip(f"message {i} is not an object")
    role = m.get("role")
    if role not in ROLES:
        raise Skip(f"message {i} has an unknown role {str(role)[:40]!r}")
    tool_calls = m.get("tool_calls")
    return MessageDraft(
        role=role, content=clean_text(m.get("content")), name=clean_text(m.get("name") or "")[:100],
        tool_calls=clean_json(tool_calls) if isinstance(tool_calls, list) and tool_calls else None,
        tool_call_id=clean_text(m.get("tool_call_id") or "")[:100],
        metadata=clean_json(m["metadata"]) if isinstance(m.get("metadata"), dict) else {},
        created_at=parse_time(m.get("created_at")), token_count=clean_int(m.get("token_count")),
    )


def _arbor_run(raw: dict, warnings: list[str]) -> RunDraft:
    messages = raw.get("messages")
    if isinstance(messages, list) and messages:
        drafts = [_arbor_message(i, m) for i, m in enumerate(messages)]
    else:  # the compact JSONL shape: input and output only
        if not isinstance(raw.get("input"), str):
            raise Skip(f"run {raw.get('run_id')!r} has neither messages nor an input")
        drafts = [MessageDraft(role="user", content=clean_text(raw["input"]))]
        if isinstance(raw.get("output"), str):
            drafts.append(MessageDraft(role="assistant", content=clean_text(raw["output"])))
    if drafts[0].role != "user":
        drafts.insert(0, MessageDraft(role="user", content="", metadata={"placeholder": True}))
        warnings.append(f"run {raw.get('run_id')!r} did not start with a user message: given a placeholder input")
    usage = raw.get("usage") if isinstance(raw.get("usage"), dict) else {}
    timings = raw.get("timings") if isinstance(raw.get("timings"), dict) else {}
    error = raw.get("error") if isinstance(raw.get("error"), dict) else {}
    status = str(raw.get("status") or "succeeded")
    if status not in _FINISHED:
        warnings.append(f"run {raw.get('run_id')!r} was {status[:20]} when exported: imported as cancelled")
        status = "cancelled"
    params = raw.get("params") if isinstance(raw.get("params"), dict) else {}
    return RunDraft(
        source_id=str(raw.get("run_id") or raw.get("id") or ""),
        messages=drafts, model=clean_text(raw.get("model") or "unknown")[:200] or "unknown", params=clean_json(params),
        memory_id=clean_text(raw.get("memory_id") or "default")[:100] or "default", status=status,
        prompt_tokens=clean_int(usage.get("prompt_tokens")),
        completion_tokens=clean_int(usage.get("completion_tokens")),
        usage_counted=bool(usage.get("usage_counted", usage.get("counted", False))),
        finish_reason=clean_text(raw.get("finish_reason") or "")[:32],
        created_at=parse_time(timings.get("created_at")), started_at=parse_time(timings.get("started_at")),
        first_token_at=parse_time(timings.get("first_token_at")), finished_at=parse_time(timings.get("finished_at")),
        error_type=clean_text(error.get("type") or "")[:100], error_message=clean_text(error.get("message") or ""),
    )


def _run_tree(raw_runs: list, warnings: list[str], *, outside: str = "") -> tuple[list[RunDraft], dict[str, int]]:
    """Runs ordered parents first with depths; ``{source run_id: index}``. Raises Skip on a cycle
    or a duplicate run_id. A run whose parent is ``outside`` (a fork point in another session of
    the file, not among these runs) becomes a root with ``external_parent`` set; other runs whose
    parent is missing become roots with a warning."""
    by_id: dict[str, dict] = {}
    order: list[str] = []
    for i, raw in enumerate(raw_runs):
        if not isinstance(raw, dict):
            raise Skip(f"run {i} is not an object")
        run_id = str(raw.get("run_id") or raw.get("id") or f"#{i}")
        if run_id in by_id:
            raise Skip(f"run_id {run_id!r} appears twice")
        by_id[run_id] = raw
        order.append(run_id)
    children: dict[str | None, list[str]] = {}
    missing = 0
    for run_id in order:
        parent = by_id[run_id].get("parent_run_id")
        parent = None if parent is None else str(parent)
        if parent is not None and parent not in by_id:
            missing += parent != outside
            parent = None
        children.setdefault(parent, []).append(run_id)
    if missing:
        warnings.append(f"{missing} run(s) named a parent run that is not in the file: made roots")
    runs: list[RunDraft] = []
    index: dict[str, int] = {}
    stack = [(run_id, None) for run_id in reversed(children.get(None, []))]
    while stack:
        run_id, parent_index = stack.pop()
        run = _arbor_run(by_id[run_id], warnings)
        if parent_index is None and outside and str(by_id[run_id].get("parent_run_id")) == outside:
            run.external_parent = outside
        run.parent = parent_index
        run.depth = 0 if parent_index is None else runs[parent_index].depth + 1
        runs.append(run)
        index[run_id] = len(runs) - 1
        stack.extend((kid, index[run_id]) for kid in reversed(children.get(run_id, [])))
    if len(runs) != len(order):
        raise Skip(f"the runs' parent links form a cycle ({len(order) - len(runs)} run(s) never reach a root)")
    if not runs:
        raise Skip("the session has no runs")
    return runs, index


def arbor(record) -> ConversationDraft:
    """A session of an Arbor JSON export (see :func:`archive.exporters.session_to_arbor`)."""
    if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
        raise Skip("not an Arbor session (no runs list)")
    version = record.get("arbor")
    if version != 1:
        raise Skip(f"unsupported Arbor export version {str(version)[:20]!r}")
    warnings: list[str] = []
    fork_point = record.get("forked_from_run_id")
    fork_point = "" if fork_point is None else str(fork_point)
    if any(isinstance(r, dict) and str(r.get("run_id") or r.get("id") or "") == fork_point for r in record["runs"]):
        fork_point = ""  # an export of a fork alone carries the shared runs: a tree of its own
    runs, index = _run_tree(record["runs"], warnings, outside=fork_point)
    active = record.get("active_run_id")
    active_index = index.get(str(active)) if active is not None else None
    if active is not None and active_index is None:
        warnings.append("the active run is not among the runs: showing the last one")
    title = clean_text(record.get("title") or "").strip()
    return ConversationDraft(
        source_format="arbor", source_id=clean_text(record.get("id") or "")[:200],
        title=short(title, 200), runs=runs,
        active=active_index if active_index is not None else len(runs) - 1,
        created_at=parse_time(record.get("created_at")), updated_at=parse_time(record.get("updated_at")),
        warnings=warnings, forked_from=fork_point,
        compactions=compaction_drafts(record.get("compactions"), index, runs, warnings),
        sections={key: value for key, value in record.items() if key not in ARBOR_KEYS},
    )


# The keys of an Arbor JSON session the archive reads itself; any other key is a section for the
# receivers of conversations.signals.session_import (comparisons: "comparisons").
ARBOR_KEYS = frozenset({"arbor", "id", "title", "created_at", "updated_at", "active_run_id", "forked_from_run_id",
                        "runs", "compactions"})


def jsonl_groups(records: Iterable[tuple[str, object]]) -> Iterator[tuple[str, object]]:
    """Group JSON Lines run records into sessions: consecutive lines with the same ``session_id``
    (or, without one, a root run and the lines after it until the next root). Yields
    ``(where, list of runs)``; anything that is not a run object passes through unchanged."""
    group: list = []
    where = ""
    key = object()
    for line_where, record in records:
        if not isinstance(record, dict) or "run_id" not in record:
            if group:
                yield where, group
                group, key = [], object()
            yield line_where, record
            continue
        session = _session_of(record).get("id")
        new_key = session if session is not None else (key if record.get("parent_run_id") is not None else object())
        if group and new_key != key:
            yield where, group
            group = []
        if not group:
            where = line_where
        key = new_key
        group.append(record)
    if group:
        yield where, group


def _session_of(record: dict) -> dict:
    """The session a run line belongs to: ``session`` ({id, title, active_run_id}, the
    ``arbor.run/1`` format) or the flat ``session_id``/``session_title``."""
    session = record.get("session") if isinstance(record.get("session"), dict) else {}
    return {
        "id": session.get("id", record.get("session_id")), "title": session.get("title", record.get("session_title")),
        "active_run_id": session.get("active_run_id"), "created_at": session.get("created_at"),
    }


def jsonl(runs: list) -> ConversationDraft:
    """A session from its JSON Lines run records (``arbor.run/1``, see :mod:`archive.exporters`)."""
    if not isinstance(runs, list):
        raise Skip("not a run record")
    for record in runs:
        fmt = record.get("format") if isinstance(record, dict) else None
        if fmt is not None and fmt != RUN_FORMAT:
            raise Skip(f"unsupported run format {str(fmt)[:40]!r}")
    warnings: list[str] = []
    tree, index = _run_tree(runs, warnings)
    session = _session_of(runs[0])
    title = clean_text(session["title"] or "").strip()
    active = index.get(str(session["active_run_id"])) if session["active_run_id"] else None
    return ConversationDraft(
        source_format="jsonl", source_id=clean_text(session["id"] or "")[:200],
        title=short(title, 200) or title_from(tree), runs=tree,
        active=active if active is not None else _newest_leaf(tree),
        created_at=parse_time(session["created_at"]), warnings=warnings,
    )


def _newest_leaf(runs: list[RunDraft]) -> int:
    parents = {r.parent for r in runs}
    leaves = [i for i in range(len(runs)) if i not in parents]
    return max(leaves, key=lambda i: (runs[i].created_at is not None, runs[i].created_at or 0, i))


CONVERTERS = {"chatgpt": chatgpt, "openwebui": openwebui, "sharegpt": sharegpt, "arbor": arbor, "jsonl": jsonl}
