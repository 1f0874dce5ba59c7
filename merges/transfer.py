"""Provenance in Arbor JSON: the ``provenance`` and ``fan_outs`` sections of an exported session,
and writing them back on import (new run ids, the same edges).

Sections (in the session's record, beside ``runs``)::

    "provenance": [{"run_id", "kind": "fuse"|"merge", "mode", "source_run_id", "branch_name",
                    "instruction", "digest", "created_at", "sources": [run id, ...]}]
    "fan_outs":   [[run id, ...], ...]   # the sibling runs of each fan-out, in start order

Run ids are the file's. On import an entry whose run (or a source) is not among the imported runs
is skipped with a warning; the turn's own record of its provenance (its input message's metadata,
which the chat shows) is rewritten with the new ids.
"""

from __future__ import annotations

from django.utils.dateparse import parse_datetime

from conversations.models import Message, Run

from .models import FanOut, Kind, Mode, Provenance, ProvenanceSource
from .selectors import provenance_snapshot


def provenance_json(run_ids: set) -> dict:
    """The sections of the exported runs ``run_ids``: ``{"provenance": [...], "fan_outs": [...]}``
    (a key only when it has entries). Three queries."""
    entries = []
    rows = Provenance.objects.filter(run_id__in=run_ids).prefetch_related("sources").order_by("created_at", "id")
    for row in rows:
        sources = [str(s.run_id) for s in sorted(row.sources.all(), key=lambda s: s.position)]
        entries.append({"run_id": str(row.run_id), "kind": row.kind, "mode": row.mode,
                        "source_run_id": str(row.source_run_id) if row.source_run_id else None,
                        "branch_name": row.branch_name, "instruction": row.instruction, "digest": row.digest,
                        "created_at": row.created_at.isoformat(), "sources": sources})
    groups: dict = {}
    members = FanOut.runs.through.objects.filter(run_id__in=run_ids).order_by("id").values_list("fanout_id", "run_id")
    for fan_out_id, run_id in members:
        groups.setdefault(fan_out_id, []).append(str(run_id))
    sections = {}
    if entries:
        sections["provenance"] = entries
    if groups:
        sections["fan_outs"] = list(groups.values())
    return sections


def _ids(raw, runs: dict) -> list | None:
    """The new run ids of a list of file run ids, or None when one is not among ``runs``."""
    if not isinstance(raw, list) or not all(isinstance(x, str) and x in runs for x in raw):
        return None
    return [runs[x] for x in raw]


def _entry(raw, runs: dict) -> tuple | None:
    """``(run id, source run id or None, source ids)`` of a well-formed entry, else None."""
    if not isinstance(raw, dict) or raw.get("kind") not in Kind.values or raw.get("run_id") not in runs:
        return None
    sources = _ids(raw.get("sources"), runs)
    source = raw.get("source_run_id")
    if not sources or (source is not None and source not in runs) or (raw.get("kind") == Kind.MERGE and source is None):
        return None
    return runs[raw["run_id"]], runs[source] if source is not None else None, sources


def _text(raw, key: str, limit: int) -> str:
    value = raw.get(key)
    return value[:limit] if isinstance(value, str) else ""


def provenance_write(*, session_id, runs: dict, sections: dict) -> list[str]:
    """Write the ``provenance`` and ``fan_outs`` sections of an imported session (``runs``: file
    run id → new run id); returns warnings about the entries skipped."""
    warnings: list[str] = []
    raw_entries = sections.get("provenance") or []
    for raw in raw_entries if isinstance(raw_entries, list) else []:
        found = _entry(raw, runs)
        if found is None:
            warnings.append("a provenance entry names runs that are not in the file: skipped")
            continue
        run_id, source_id, source_ids = found
        mode = raw.get("mode") if raw.get("mode") in Mode.values else ""
        provenance = Provenance.objects.create(
            run_id=run_id, kind=raw["kind"], mode=mode, source_run_id=source_id,
            branch_name=_text(raw, "branch_name", 60), instruction=_text(raw, "instruction", 2000),
            digest=_text(raw, "digest", 200_000), created_at=parse_datetime(str(raw.get("created_at") or "")) or None)
        ProvenanceSource.objects.bulk_create(ProvenanceSource(provenance=provenance, run_id=pk, position=i)
                                             for i, pk in enumerate(source_ids))
        _restamp(run_id, provenance)
    raw_groups = sections.get("fan_outs") or []
    for raw in raw_groups if isinstance(raw_groups, list) else []:
        members = _ids(raw, runs)
        if not members or len(members) < 2:
            warnings.append("a fan-out names runs that are not in the file: skipped")
            continue
        group = FanOut.objects.create(session_id=session_id)
        group.runs.add(*members)
        Message.objects.filter(run_id__in=members, position=0).update(metadata={"fan_out": str(group.pk)})
    return warnings


def _restamp(run_id, provenance: Provenance) -> None:
    """Rewrite the provenance the run's input message records (what the chat shows) with the new ids."""
    by_id = Run.objects.in_bulk([s.run_id for s in provenance.sources.all()] + [provenance.source_run_id])
    snapshot = provenance_snapshot(
        kind=provenance.kind, mode=provenance.mode, branch_name=provenance.branch_name,
        source=by_id.get(provenance.source_run_id),
        sources=[by_id[s.run_id] for s in provenance.sources.order_by("position")])
    first = Message.objects.filter(run_id=run_id, position=0).first()
    if first is not None:
        Message.objects.filter(pk=first.pk).update(metadata={**(first.metadata or {}), "provenance": snapshot})
