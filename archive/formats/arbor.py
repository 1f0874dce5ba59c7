"""Arbor JSON (written by :mod:`archive.exporters`): ``{arbor: 1, id, title, active_run_id,
runs: [{run_id, parent_run_id, model, params, usage, timings, messages: [...]}]}``, optionally with
``forked_from_run_id`` (a fork of a session earlier in the same file), ``compactions``
(:mod:`archive.compactions`) and other apps' sections (``comparisons``).

:func:`run_tree` orders a list of run records parents first; the JSON Lines reader
(:mod:`archive.formats.jsonl`) uses it too.
"""

from __future__ import annotations

from ..compactions import compaction_drafts
from ..drafts import (
    ConversationDraft,
    MessageDraft,
    RunDraft,
    Skip,
    clean_int,
    parse_time,
    repair_json,
    repair_text,
    short,
)
from .common import ROLES

_FINISHED = {"succeeded", "failed", "cancelled"}


def _arbor_message(i: int, m) -> MessageDraft:
    if not isinstance(m, dict):
        raise Skip(f"message {i} is not an object")
    role = m.get("role")
    if role not in ROLES:
        raise Skip(f"message {i} has an unknown role {str(role)[:40]!r}")
    tool_calls = m.get("tool_calls")
    return MessageDraft(
        role=role, content=repair_text(m.get("content")), name=repair_text(m.get("name") or "")[:100],
        tool_calls=repair_json(tool_calls) if isinstance(tool_calls, list) and tool_calls else None,
        tool_call_id=repair_text(m.get("tool_call_id") or "")[:100],
        metadata=repair_json(m["metadata"]) if isinstance(m.get("metadata"), dict) else {},
        created_at=parse_time(m.get("created_at")), token_count=clean_int(m.get("token_count")),
    )


def _arbor_run(raw: dict, warnings: list[str]) -> RunDraft:
    messages = raw.get("messages")
    if isinstance(messages, list) and messages:
        drafts = [_arbor_message(i, m) for i, m in enumerate(messages)]
    else:  # the compact JSONL shape: input and output only
        if not isinstance(raw.get("input"), str):
            raise Skip(f"run {raw.get('run_id')!r} has neither messages nor an input")
        drafts = [MessageDraft(role="user", content=repair_text(raw["input"]))]
        if isinstance(raw.get("output"), str):
            drafts.append(MessageDraft(role="assistant", content=repair_text(raw["output"])))
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
        messages=drafts, model=repair_text(raw.get("model") or "unknown")[:200] or "unknown",
        params=repair_json(params),
        memory_id=repair_text(raw.get("memory_id") or "default")[:100] or "default", status=status,
        prompt_tokens=clean_int(usage.get("prompt_tokens")),
        completion_tokens=clean_int(usage.get("completion_tokens")),
        usage_counted=bool(usage.get("usage_counted", usage.get("counted", False))),
        finish_reason=repair_text(raw.get("finish_reason") or "")[:32],
        created_at=parse_time(timings.get("created_at")), started_at=parse_time(timings.get("started_at")),
        first_token_at=parse_time(timings.get("first_token_at")), finished_at=parse_time(timings.get("finished_at")),
        error_type=repair_text(error.get("type") or "")[:100], error_message=repair_text(error.get("message") or ""),
    )


def run_tree(raw_runs: list, warnings: list[str], *, outside: str = "") -> tuple[list[RunDraft], dict[str, int]]:
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


def convert(record) -> ConversationDraft:
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
    runs, index = run_tree(record["runs"], warnings, outside=fork_point)
    active = record.get("active_run_id")
    active_index = index.get(str(active)) if active is not None else None
    if active is not None and active_index is None:
        warnings.append("the active run is not among the runs: showing the last one")
    title = repair_text(record.get("title") or "").strip()
    return ConversationDraft(
        source_format="arbor", source_id=repair_text(record.get("id") or "")[:200],
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

