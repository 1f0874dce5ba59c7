"""Exporting a session: Arbor JSON (the whole tree), JSON Lines (one run per line), a ChatGPT-style
``conversations.json`` and Markdown of one branch.

Every exporter reads the session's visible tree (its own runs and, for a fork, the ancestors it
shares) with two queries, and yields bytes, so a view can stream it. Arbor JSON and JSON Lines
carry everything a run has (messages with tool calls and metadata, model, params, memory_id, usage,
timings, error); importing them gives the same tree again (new ids, same structure and content).

Arbor JSON, version 1 — a list of sessions, so that a file of many sessions streams on import::

    [{"arbor": 1, "id", "title", "created_at", "updated_at", "active_run_id", "forked_from_run_id",
      "runs": [{"run_id", "parent_run_id", "depth", "status", "model", "params", "memory_id",
                "usage": {"prompt_tokens", "completion_tokens", "counted"}, "finish_reason",
                "timings": {"created_at", "started_at", "first_token_at", "finished_at"},
                "error": null | {"type", "message"},
                "messages": [{"position", "role", "content", "name", "tool_calls", "tool_call_id",
                              "metadata", "token_count", "created_at"}]}],
      "compactions": [...],   # when it has compaction markers (see archive.compactions)
      "comparisons": [...]}]  # when it has A/B comparisons (see comparisons.transfer)

Runs are listed parents first. Times are ISO 8601 in UTC. On import, ``forked_from_run_id`` makes the
session a fork when it names a run of a session earlier in the same file (its runs are then only its
own); an export of one fork names a run among its own runs (the shared ones are included), and is
imported as a tree of its own.

JSON Lines — run snapshots, ``arbor.run/1`` (:data:`archive.formats.RUN_FORMAT`): one finished run
per line, a JSON object (UTF-8), parents before children. Written for one session by
:func:`session_to_jsonl` (every line names that session, a fork's shared ancestors included) and
for any set of runs by :func:`write_runs` (``manage.py export_runs``); read back by the archive
importer (``--format jsonl``, new ids) and by :func:`archive.snapshots.read_runs`
(``manage.py import_runs``, the same ids)::

    format          "arbor.run/1"
    run_id          UUID of the run; parent_run_id: its parent's, or null for a root
    session         {"id", "title", "created_at", "forked_from_run_id", "active_run_id"}
    status          succeeded, failed or cancelled (queued/running runs are not exported)
    model, params, memory_id, finish_reason, error ({"type", "message"} or null)
    input           the user message's text; output: the answer's text or null
    messages        every message of the run in order: {"position", "role", "content", "name",
                    "tool_calls", "tool_call_id", "metadata", "token_count", "created_at"}
    usage           {"prompt_tokens", "completion_tokens", "usage_counted"}
    timings         {"created_at", "started_at", "first_token_at", "finished_at",
                    "latency_seconds", "time_to_first_token_seconds"} (ISO 8601, seconds)
    sections        only on a session's first line, when it has any: the session's sections of
                    other apps, as Arbor JSON carries them ({"provenance", "fan_outs",
                    "comparisons"}; run ids are the file's); the importer hands them on
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from django.db.models import Prefetch
from django.utils.text import slugify

from conversations.models import FINISHED_STATUSES, Message, Role, Run, Session
from conversations.selectors import get_branch_run_for, get_session_for
from conversations.signals import session_export
from core.errors import InvalidInput

from .compactions import compactions_json
from .formats import RUN_FORMAT

EXPORT_FORMATS = {
    "arbor": ("application/json", "json"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "chatgpt": ("application/json", "json"),
    "markdown": ("text/markdown; charset=utf-8", "md"),
}


@dataclass
class Export:
    filename: str
    content_type: str
    chunks: Iterator[bytes]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tree(session: Session) -> tuple[list[Run], dict]:
    """The session's visible runs, parents first, and ``{run_id: [Message, ...]}`` in position order."""
    runs = list(session.visible_runs().order_by("depth", "created_at", "id"))
    by_run: dict = {run.pk: [] for run in runs}
    messages = Message.objects.filter(run__in=session.visible_runs().values("pk")).order_by("run_id", "position")
    for message in messages.iterator(chunk_size=2000):
        by_run[message.run_id].append(message)
    return runs, by_run


def message_json(m: Message) -> dict:
    """One message as both export formats write it (``position`` ... ``created_at``)."""
    return {"position": m.position, "role": m.role, "content": m.content, "name": m.name, "tool_calls": m.tool_calls,
            "tool_call_id": m.tool_call_id, "metadata": m.metadata, "token_count": m.token_count,
            "created_at": _iso(m.created_at)}


def run_json(run: Run, messages: list[Message]) -> dict:
    """One run of an Arbor JSON export (``messages``: its messages in position order)."""
    return {
        "run_id": str(run.pk),
        "parent_run_id": str(run.parent_run_id) if run.parent_run_id else None,
        "depth": run.depth,
        "status": run.status,
        "model": run.model,
        "params": run.params,
        "memory_id": run.memory_id,
        "usage": {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
                  "counted": run.usage_counted},
        "finish_reason": run.finish_reason,
        "timings": {"created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
                    "first_token_at": _iso(run.first_token_at), "finished_at": _iso(run.finished_at)},
        "error": run.error,
        "messages": [message_json(m) for m in messages],
    }


def session_to_arbor(session: Session) -> Iterator[bytes]:
    """Arbor JSON (a list with this one session), streamed run by run; with its compaction markers
    (``compactions``) and other apps' sections (``comparisons``) when it has any."""
    runs, by_run = tree(session)
    head = {
        "arbor": 1, "id": str(session.pk), "title": session.title, "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at),
        "active_run_id": str(session.active_run_id) if session.active_run_id else None,
        "forked_from_run_id": str(session.forked_from_run_id) if session.forked_from_run_id else None,
    }
    compactions = compactions_json(runs, by_run)
    if compactions:
        head["compactions"] = compactions
    for _, sections in session_export.send(sender=Session, session=session, run_ids={r.pk for r in runs}):
        head.update(sections or {})
    yield ("[" + _dumps(head)[:-1] + ',"runs":[').encode()
    for i, run in enumerate(runs):
        yield (("," if i else "") + "\n" + _dumps(run_json(run, by_run[run.pk]))).encode()
    yield b"\n]}]\n"


def session_head(session: Session) -> dict:
    """The ``session`` object of a run snapshot line."""
    return {
        "id": str(session.pk), "title": session.title, "created_at": _iso(session.created_at),
        "forked_from_run_id": str(session.forked_from_run_id) if session.forked_from_run_id else None,
        "active_run_id": str(session.active_run_id) if session.active_run_id else None,
    }


def run_record(run: Run, messages: list[Message] | None = None, *, session: Session | None = None) -> dict:
    """One run as a JSON-ready ``arbor.run/1`` dict (see the module doc). ``messages``: its
    messages in position order, if already read; ``session``: the session the line names
    (default: the run's own, ``run.session``)."""
    messages = messages if messages is not None else list(run.messages.order_by("position"))
    by_position = {m.position: m for m in messages}
    return {
        "format": RUN_FORMAT,
        "run_id": str(run.pk),
        "parent_run_id": str(run.parent_run_id) if run.parent_run_id else None,
        "session": session_head(session if session is not None else run.session),
        "status": run.status, "model": run.model, "params": run.params, "memory_id": run.memory_id,
        "finish_reason": run.finish_reason, "error": run.error,
        "input": by_position[0].content if 0 in by_position else "",
        "output": next((m.content for m in reversed(messages) if m.role == Role.ASSISTANT), None),
        "messages": [message_json(m) for m in messages],
        "usage": {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
                  "usage_counted": run.usage_counted},
        "timings": {
            "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
            "first_token_at": _iso(run.first_token_at), "finished_at": _iso(run.finished_at),
            "latency_seconds": run.latency_seconds(), "time_to_first_token_seconds": run.time_to_first_token_seconds(),
        },
    }


def run_lines(runs: Iterable[tuple[Run, list[Message]]], *, session: Session | None = None) -> Iterator[str]:
    """``arbor.run/1`` lines (with their newline) of ``(run, messages)`` pairs, in the given order;
    ``session``: the session every line names (default: each run's own)."""
    for run, messages in runs:
        yield _dumps(run_record(run, messages, session=session)) + "\n"


def session_to_jsonl(session: Session) -> Iterator[bytes]:
    """JSON Lines run snapshots (``arbor.run/1``), one run per line, parents first; every line
    names this session (a fork's shared ancestors included). The first line also carries the
    other apps' sections of the session (``sections``, as in Arbor JSON: provenance, fan-outs,
    comparisons) when it has any."""
    runs, by_run = tree(session)
    sections: dict = {}
    for _, found in session_export.send(sender=Session, session=session, run_ids={r.pk for r in runs}):
        sections.update(found or {})
    for i, run in enumerate(runs):
        record = run_record(run, by_run[run.pk], session=session)
        if i == 0 and sections:
            record["sections"] = sections
        yield (_dumps(record) + "\n").encode()


def runs_for_export(runs) -> Iterable[Run]:
    """Finished runs of a Run queryset, parents first, with sessions and messages read in bulk."""
    return (runs.filter(status__in=FINISHED_STATUSES).select_related("session")
            .prefetch_related(Prefetch("messages", queryset=Message.objects.order_by("position")))
            .order_by("depth", "created_at", "id"))


def write_runs(runs: Iterable[Run], fp: IO[str]) -> int:
    """Write ``runs`` (parents before children, e.g. :func:`runs_for_export`) to the text file
    ``fp``, one ``arbor.run/1`` JSON object per line; returns how many lines were written."""
    count = 0
    for line in run_lines((run, list(run.messages.all())) for run in runs):
        fp.write(line)
        count += 1
    return count


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _chatgpt_message(run: Run, m: Message, node_id: str, *, last: bool) -> dict:
    """The ChatGPT ``message`` of one Message (``last``: the run's last message, which carries
    the run's finish reason). A tool call becomes a ``code`` message addressed to the tool."""
    recipient = "all"
    content = {"content_type": m.metadata.get("content_type", "text") if m.role != "user" else "text",
               "parts": [m.content]}
    if m.tool_calls:
        call = m.tool_calls[0].get("function", {}) if isinstance(m.tool_calls[0], dict) else {}
        recipient = call.get("name") or "tool"
        content = {"content_type": "code", "language": m.metadata.get("language", "unknown"),
                   "text": call.get("arguments", "")}
    elif content["content_type"] in ("code", "execution_output"):
        content = {"content_type": content["content_type"], "text": m.content}
        if m.metadata.get("language"):
            content["language"] = m.metadata["language"]
    elif content["content_type"] not in ("text", "multimodal_text"):
        content = {"content_type": "text", "parts": [m.content]}
    metadata = {}
    if m.role == "assistant":
        metadata["model_slug"] = m.metadata.get("model") or run.model
        if run.finish_reason and last:
            metadata["finish_details"] = {"type": {"length": "max_tokens"}.get(run.finish_reason, run.finish_reason)}
    if m.metadata.get("hidden"):
        metadata["is_visually_hidden_from_conversation"] = True
    # A tool call's message id is the call id, so a re-import links its result the same way.
    message_id = (m.tool_calls[0].get("id") if m.tool_calls and isinstance(m.tool_calls[0], dict) else None)
    return {
        "id": message_id or node_id,
        "author": {"role": m.role, "name": m.name or None, "metadata": {}},
        "create_time": _epoch(m.created_at), "content": content, "status": "finished_successfully",
        "recipient": recipient, "metadata": metadata,
    }


def session_to_chatgpt(session: Session) -> Iterator[bytes]:
    """A ChatGPT-style ``conversations.json`` (a list with one conversation): a root node, a system
    node where a run had a system prompt, then each run's messages as a chain of nodes, the first
    hanging under the parent run's last node; tool calls become assistant messages addressed to
    the tool (``recipient``); ``current_node`` is the active run's last message."""
    runs, by_run = tree(session)
    mapping: dict[str, dict] = {"client-created-root": {"id": "client-created-root", "message": None, "parent": None,
                                                        "children": []}}
    last_node: dict = {}

    def add(node_id: str, parent: str, message: dict) -> None:
        mapping[node_id] = {"id": node_id, "message": message, "parent": parent, "children": []}
        mapping[parent]["children"].append(node_id)

    for run in runs:
        parent = last_node.get(run.parent_run_id, "client-created-root")
        system = run.params.get("system") if isinstance(run.params, dict) else None
        if system:
            node_id = f"{run.pk}-system"
            add(node_id, parent, {
                "id": node_id, "author": {"role": "system", "name": None, "metadata": {}},
                "create_time": _epoch(run.created_at), "content": {"content_type": "text", "parts": [system]},
                "status": "finished_successfully", "recipient": "all", "metadata": {},
            })
            parent = node_id
        for m in by_run[run.pk]:
            if m.metadata.get("placeholder") and m.position == 0:
                continue
            node_id = f"{run.pk}-{m.position}"
            add(node_id, parent, _chatgpt_message(run, m, node_id, last=m.position == len(by_run[run.pk]) - 1))
            parent = node_id
        last_node[run.pk] = parent
    conversation = {
        "id": str(session.pk), "conversation_id": str(session.pk), "title": session.title,
        "create_time": _epoch(session.created_at), "update_time": _epoch(session.updated_at),
        "mapping": mapping,
        "current_node": last_node.get(session.active_run_id) if session.active_run_id else None,
        # The model of a run without an answer has no other place in this format.
        "default_model_slug": next((r.model for r in runs if not any(m.role == "assistant" for m in by_run[r.pk])),
                                   runs[-1].model if runs else None),
    }
    yield (_dumps([conversation]) + "\n").encode()


def branch_to_markdown(session: Session, run: Run | None = None) -> Iterator[bytes]:
    """Markdown of the branch from the root to ``run`` (default: the active run): one section per message."""
    target = run.pk if run is not None else session.active_run_id
    out = [f"# {session.title or 'Session'}\n"]
    if target is not None:
        current_run = None
        for m in Message.objects.on_path_to(target):
            if m.run_id != current_run:
                current_run = m.run_id
                system = m.run.params.get("system") if isinstance(m.run.params, dict) else None
                if system:
                    out.append(f"\n## System\n\n{system}\n")
            if m.metadata.get("placeholder"):
                continue
            if m.role == "user":
                head = "User"
            elif m.role == "assistant":
                head = f"Assistant ({m.run.model})"
            elif m.role == "tool":
                head = f"Tool{(' ' + m.name) if m.name else ''}"
            else:
                head = "System"
            body = m.content
            if m.tool_calls:
                calls = "\n".join(
                    f"- `{c.get('function', {}).get('name', '?')}` `{c.get('function', {}).get('arguments', '')}`"
                    for c in m.tool_calls if isinstance(c, dict)
                )
                body = (body + "\n\n" if body else "") + "Tool calls:\n\n" + calls
            out.append(f"\n## {head}\n\n{body}\n")
    yield "".join(out).encode()


def export_session(*, session: Session, format: str, run: Run | None = None) -> Export:
    """The export of ``session`` in ``format`` (arbor, jsonl, chatgpt, markdown); ``run`` picks the
    branch for Markdown. Raises InvalidInput for an unknown format."""
    if format not in EXPORT_FORMATS:
        raise InvalidInput(f"unknown export format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    content_type, ext = EXPORT_FORMATS[format]
    base = slugify(session.title)[:60] or f"session-{str(session.pk)[:8]}"
    if format == "arbor":
        chunks = session_to_arbor(session)
    elif format == "jsonl":
        chunks = session_to_jsonl(session)
    elif format == "chatgpt":
        chunks, base = session_to_chatgpt(session), f"{base}-conversations"
    else:
        chunks = branch_to_markdown(session, run)
    return Export(filename=f"{base}.{ext}", content_type=content_type, chunks=chunks)


def export_for(user, session_id, format: str, run_id=None) -> Export:
    """The export of ``user``'s session ``session_id`` in ``format`` (the download page and the API):
    ``run_id`` picks the branch for Markdown. Raises NotFound for another user's (or an unknown, or
    a deleted) session, a run that is not in the session's tree, and InvalidInput for an unknown
    format."""
    session = get_session_for(user, session_id)
    run = get_branch_run_for(user, session, run_id) if run_id else None
    return export_session(session=session, format=format, run=run)
