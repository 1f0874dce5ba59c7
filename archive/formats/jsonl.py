"""Arbor JSON Lines (``arbor.run/1``, written by :mod:`archive.exporters`): one run per line,
grouped into sessions by ``session_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..drafts import (
    ConversationDraft,
    RunDraft,
    Skip,
    parse_time,
    repair_text,
    short,
    title_from,
)
from .arbor import run_tree

RUN_FORMAT = "arbor.run/1"  # the ``format`` of a JSON Lines run snapshot (see archive.exporters)


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


def convert(runs: list) -> ConversationDraft:
    """A session from its JSON Lines run records (``arbor.run/1``, see :mod:`archive.exporters`)."""
    if not isinstance(runs, list):
        raise Skip("not a run record")
    for record in runs:
        fmt = record.get("format") if isinstance(record, dict) else None
        if fmt is not None and fmt != RUN_FORMAT:
            raise Skip(f"unsupported run format {str(fmt)[:40]!r}")
    warnings: list[str] = []
    tree, index = run_tree(runs, warnings)
    session = _session_of(runs[0])
    title = repair_text(session["title"] or "").strip()
    active = index.get(str(session["active_run_id"])) if session["active_run_id"] else None
    return ConversationDraft(
        source_format="jsonl", source_id=repair_text(session["id"] or "")[:200],
        title=short(title, 200) or title_from(tree), runs=tree,
        active=active if active is not None else _newest_leaf(tree),
        created_at=parse_time(session["created_at"]), warnings=warnings,
        sections=_sections(runs),
    )


def _sections(runs: list) -> dict:
    """The other apps' sections a session's first line carries (``sections``: provenance,
    fan-outs, comparisons; see :mod:`archive.exporters`), or none."""
    found = runs[0].get("sections") if isinstance(runs[0], dict) else None
    return {k: v for k, v in found.items() if isinstance(k, str)} if isinstance(found, dict) else {}


def _newest_leaf(runs: list[RunDraft]) -> int:
    parents = {r.parent for r in runs}
    leaves = [i for i in range(len(runs)) if i not in parents]
    return max(leaves, key=lambda i: (runs[i].created_at is not None, runs[i].created_at or 0, i))

