"""Reading run snapshots (``arbor.run/1`` JSON Lines, written by :func:`archive.exporters.write_runs`;
the format is described in :mod:`archive.exporters`) back into the same tree, ids included.

The archive importer (:func:`archive.services.import_archive`, ``--format jsonl``) reads the same
lines as one new copy per session; :func:`read_runs` (``manage.py import_runs``) instead rebuilds
the exported tree itself: same run and session ids where they are free, parents that may already
be in the database, forks that point across sessions — same parents, same messages, usage and
timings, in one transaction.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from django.db import transaction

from conversations.models import FINISHED_STATUSES, Message, Role, Run, RunStatus, Session

from .formats import RUN_FORMAT as FORMAT


@dataclass
class SkippedLine:
    line: int
    run_id: str | None
    reason: str


@dataclass
class SnapshotReport:
    """What :func:`read_runs` did: runs and sessions created, lines skipped with reasons, and the
    id each imported run got (``run_ids``: id in the file → id in the database)."""

    runs_imported: int = 0
    sessions_imported: int = 0
    skipped: list[SkippedLine] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)
    session_ids: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.skipped

    def summary(self) -> str:
        text = f"{self.runs_imported} runs in {self.sessions_imported} sessions imported"
        return text + (f", {len(self.skipped)} lines skipped" if self.skipped else "")


class _Bad(ValueError):
    pass


def _uuid(value, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise _Bad(f"{what} is not a UUID: {value!r}") from None


def _dt(value, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise _Bad(f"{what} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise _Bad(f"{what} has no time zone: {value!r}")
    return parsed


def _clean_messages(data: dict) -> list[dict]:
    """The line's messages as model fields (a minimal line: its input and output); raises _Bad."""
    messages = data.get("messages")
    if messages is None:  # a minimal line: input and output only
        messages = [{"position": 0, "role": "user", "content": data.get("input") or ""}]
        if data.get("output") is not None:
            messages.append({"position": 1, "role": "assistant", "content": data["output"]})
    if not isinstance(messages, list) or not messages:
        raise _Bad("messages must be a non-empty list")
    clean_messages = []
    for index, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in Role.values:
            raise _Bad(f"message {index} has no valid role")
        if not isinstance(m.get("content") or "", str):
            raise _Bad(f"message {index}: content must be a string")
        clean_messages.append({
            "position": int(m.get("position", index)), "role": m["role"], "content": m.get("content") or "",
            "name": (m.get("name") or "")[:100], "tool_calls": m.get("tool_calls") or None,
            "tool_call_id": (m.get("tool_call_id") or "")[:100], "metadata": m.get("metadata") or {},
            "token_count": m.get("token_count"), "created_at": _dt(m.get("created_at"), f"message {index} created_at"),
        })
    if len({m["position"] for m in clean_messages}) != len(clean_messages):
        raise _Bad("two messages share a position")
    return clean_messages


def _validate(data) -> dict:
    """One line as the fields :func:`_create_run` needs; raises _Bad (or ValueError/TypeError)."""
    if not isinstance(data, dict):
        raise _Bad("the line is not a JSON object")
    if data.get("format", FORMAT) != FORMAT:
        raise _Bad(f"unknown format {data.get('format')!r} (expected {FORMAT})")
    run_id = _uuid(data.get("run_id"), "run_id")
    parent = _uuid(data["parent_run_id"], "parent_run_id") if data.get("parent_run_id") else None
    session = data.get("session")
    if not isinstance(session, dict) or not session.get("id"):
        raise _Bad("session is missing")
    session_id = _uuid(session["id"], "session.id")
    status = data.get("status", RunStatus.SUCCEEDED)
    if status not in FINISHED_STATUSES:
        raise _Bad(f"status must be succeeded, failed or cancelled, not {status!r}")
    clean_messages = _clean_messages(data)
    usage, timings = data.get("usage") or {}, data.get("timings") or {}
    error = data.get("error") or {}
    return {
        "run_id": run_id, "parent_run_id": parent, "session_id": session_id,
        "session": {
            "title": str(session.get("title") or "")[:200],
            "created_at": _dt(session.get("created_at"), "session.created_at"),
            "forked_from_run_id": _uuid(session["forked_from_run_id"], "forked_from_run_id")
            if session.get("forked_from_run_id") else None,
            "active_run_id": _uuid(session["active_run_id"], "active_run_id") if session.get("active_run_id") else None,
        },
        "status": status, "model": str(data.get("model") or "")[:200], "params": data.get("params") or {},
        "memory_id": str(data.get("memory_id") or "default")[:100],
        "finish_reason": str(data.get("finish_reason") or "")[:32],
        "error_type": str(error.get("type") or "")[:100], "error_message": str(error.get("message") or ""),
        "messages": clean_messages,
        "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
        "usage_counted": bool(usage.get("usage_counted", False)),
        "created_at": _dt(timings.get("created_at"), "timings.created_at"),
        "started_at": _dt(timings.get("started_at"), "timings.started_at"),
        "first_token_at": _dt(timings.get("first_token_at"), "timings.first_token_at"),
        "finished_at": _dt(timings.get("finished_at"), "timings.finished_at"),
    }


def parse_runs(fp: IO[str]) -> tuple[list[tuple[int, dict]], list[SkippedLine]]:
    """Validated records ``(line number, record)`` and the lines that failed validation."""
    records: list[tuple[int, dict]] = []
    skipped: list[SkippedLine] = []
    for number, line in enumerate(fp, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            skipped.append(SkippedLine(number, None, f"not JSON: {exc}"))
            continue
        try:
            records.append((number, _validate(data)))
        except (_Bad, ValueError, TypeError) as exc:
            run_id = data.get("run_id") if isinstance(data, dict) else None
            skipped.append(SkippedLine(number, str(run_id) if run_id else None, str(exc)))
    return records, skipped


@transaction.atomic
def read_runs(fp: IO[str], *, user, keep_ids: bool = True) -> SnapshotReport:
    """Import the runs in the JSONL text file ``fp`` into sessions owned by ``user``, in one
    transaction (a database error leaves nothing behind), rebuilding the same tree.

    ``keep_ids``: runs and sessions keep their ids when those are free (so an export imported into
    an empty database is identical, ids included); a run whose id exists already is skipped. With
    ``keep_ids=False`` everything gets new ids (import a copy next to the original).
    A line is skipped, with its reason in the report, when it is not valid JSON of this format,
    repeats a run_id, or its parent is neither in the file (imported) nor a run of ``user``'s in
    the database. Returns a :class:`SnapshotReport`.
    """
    records, skipped = parse_runs(fp)
    report = SnapshotReport(skipped=skipped)
    placer = _Placer(_first_of_each_run(records, report), user=user, keep_ids=keep_ids, report=report)
    placer.place_all()
    _set_active_runs(placer.sessions, records, placer.placed)
    report.runs_imported = len(placer.placed)
    report.sessions_imported = len(placer.sessions)
    report.skipped.sort(key=lambda s: s.line)
    return report


def _first_of_each_run(records: list[tuple[int, dict]], report: SnapshotReport) -> list[tuple[int, dict]]:
    """The records whose run_id did not appear on an earlier line (the others go to the report)."""
    seen: set[str] = set()
    pending: list[tuple[int, dict]] = []
    for number, rec in records:
        if rec["run_id"] in seen:
            report.skipped.append(SkippedLine(number, rec["run_id"], "the same run_id appears earlier in the file"))
            continue
        seen.add(rec["run_id"])
        pending.append((number, rec))
    return pending


class _Placer:
    """Creates the runs of ``pending`` parents first (``placed``: file run id → Run; ``sessions``:
    file session id → Session), skipping with a reason what cannot be placed."""

    def __init__(self, pending: list[tuple[int, dict]], *, user, keep_ids: bool, report: SnapshotReport):
        self.pending, self.user, self.keep_ids, self.report = pending, user, keep_ids, report
        self.existing: set[str] = set()
        if keep_ids:
            self.existing = {str(pk) for pk in Run.objects.filter(pk__in=[r["run_id"] for _, r in pending])
                             .values_list("pk", flat=True)}
        wanted_parents = {r["parent_run_id"] for _, r in pending if r["parent_run_id"]}
        self.parents_in_db = {str(r.pk): r for r in Run.objects.filter(pk__in=wanted_parents, session__owner=user)}
        self.in_file = {r["run_id"] for _, r in pending}
        self.placed: dict[str, Run] = {}
        self.sessions: dict[str, Session] = {}
        self.skipped_ids: set[str] = set()

    def place_all(self) -> None:
        """Repeat passes until nothing more can be placed (files are usually already in order)."""
        remaining = sorted(self.pending, key=lambda item: item[0])
        progress = True
        while remaining and progress:
            later = [(number, rec) for number, rec in remaining if not self._place(number, rec)]
            progress = len(later) < len(remaining)
            remaining = later
        for number, rec in remaining:  # a cycle: parents that never got placed
            self.report.skipped.append(SkippedLine(number, rec["run_id"], "its parent chain loops back to itself"))

    def _skip(self, number: int, rec: dict, reason: str) -> bool:
        self.report.skipped.append(SkippedLine(number, rec["run_id"], reason))
        self.skipped_ids.add(rec["run_id"])
        return True

    def _place(self, number: int, rec: dict) -> bool:
        """Create (or skip) the run of ``rec``; False when its parent in the file is not placed yet."""
        parent_id = rec["parent_run_id"]
        if self.keep_ids and rec["run_id"] in self.existing:
            return self._skip(number, rec, "a run with this run_id exists already")
        if parent_id and parent_id in self.skipped_ids:
            return self._skip(number, rec, f"its parent run {parent_id} was skipped")
        if parent_id and parent_id not in self.placed and parent_id in self.in_file:
            return False
        parent = (self.placed.get(parent_id) or self.parents_in_db.get(parent_id)) if parent_id else None
        if parent_id and parent is None:
            return self._skip(number, rec, f"its parent run {parent_id} is neither in the file nor one of your runs")
        self.placed[rec["run_id"]] = _create_run(rec, parent, user=self.user, keep_ids=self.keep_ids,
                                                 sessions=self.sessions, placed=self.placed, report=self.report)
        return True


def _create_run(rec: dict, parent: Run | None, *, user, keep_ids: bool, sessions: dict, placed: dict,
                report: SnapshotReport) -> Run:
    session = sessions.get(rec["session_id"])
    if session is None:
        info = rec["session"]
        session_pk = uuid.UUID(rec["session_id"])
        if not keep_ids or Session.objects.filter(pk=session_pk).exists():
            session_pk = uuid.uuid4()
        forked_from = None
        if info["forked_from_run_id"]:
            forked_from = placed.get(info["forked_from_run_id"]) or Run.objects.filter(
                pk=info["forked_from_run_id"], session__owner=user).first()
        session = Session.objects.create(
            id=session_pk, owner=user, title=info["title"], forked_from_run=forked_from,
            **({"created_at": info["created_at"], "updated_at": info["created_at"]} if info["created_at"] else {}),
        )
        sessions[rec["session_id"]] = session
        report.session_ids[rec["session_id"]] = str(session.pk)
    run_pk = uuid.UUID(rec["run_id"]) if keep_ids else uuid.uuid4()
    times = {k: rec[k] for k in ("created_at", "started_at", "first_token_at", "finished_at") if rec[k] is not None}
    run = Run.objects.create(
        id=run_pk, session=session, parent_run=parent, depth=0 if parent is None else parent.depth + 1,
        status=rec["status"], model=rec["model"], params=rec["params"], memory_id=rec["memory_id"],
        prompt_tokens=rec["prompt_tokens"], completion_tokens=rec["completion_tokens"],
        usage_counted=rec["usage_counted"],
        finish_reason=rec["finish_reason"], error_type=rec["error_type"], error_message=rec["error_message"], **times,
    )
    Message.objects.bulk_create([
        Message(run=run, position=m["position"], role=m["role"], content=m["content"], name=m["name"],
                tool_calls=m["tool_calls"], tool_call_id=m["tool_call_id"], metadata=m["metadata"],
                token_count=m["token_count"], **({"created_at": m["created_at"]} if m["created_at"] else {}))
        for m in rec["messages"]
    ])
    report.run_ids[rec["run_id"]] = str(run.pk)
    return run


def _set_active_runs(sessions: dict[str, Session], records: list[tuple[int, dict]], placed: dict[str, Run]) -> None:
    """Each imported session shows the branch it showed when exported (else its newest imported run)."""
    wanted = {r["session_id"]: r["session"]["active_run_id"] for _, r in records}
    for file_session_id, session in sessions.items():
        active = placed.get(wanted.get(file_session_id) or "")
        if active is None:
            active = (Run.objects.filter(session=session).order_by("-created_at").first())
        if active is not None:
            Session.objects.filter(pk=session.pk).update(active_run=active)
