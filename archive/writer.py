"""The one writer of an import: batches of converted conversations bulk-inserted, each batch in a
transaction (or, when the database refuses it, each conversation in its own).

On PostgreSQL, outside a transaction, :class:`Batches` hands batches to ``ARBOR_IMPORT_WRITERS``
threads (each on its own connection) so several backends index at once while the caller parses the
next batch. Rows are built as plain dicts and go in with ``COPY`` (:func:`insert_rows`).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from conversations.models import Message, Run, Session, plan_segments
from conversations.signals import session_import

from .compactions import write_compactions
from .drafts import ConversationDraft
from .models import ImportedConversation
from .report import ALREADY_IMPORTED, ImportReport

log = logging.getLogger(__name__)


class Batches:
    """Collects drafts into batches of at most ``limits`` = (messages, conversations) and writes
    each one: through :class:`_Writers` threads on PostgreSQL outside a transaction (when
    ``ARBOR_IMPORT_WRITERS`` > 0), else here. ``progress`` is called after every batch."""

    def __init__(self, *, source, report: ImportReport, progress, limits: tuple[int, int], **write_kwargs):
        self.source, self.report, self.progress, self.limits = source, report, progress, limits
        # file run id → (new run id, depth) of every Arbor JSON run written (committed) so far: forks find
        # their fork point in it.
        self.known_runs: dict[str, tuple[uuid.UUID, int]] = {}
        self.write_kwargs = {"report": report, "known_runs": self.known_runs, **write_kwargs}
        self.batch: list[tuple[str, ConversationDraft]] = []
        self.size = 0
        self.writer = None
        if connection.vendor == "postgresql" and not connection.in_atomic_block and settings.ARBOR_IMPORT_WRITERS > 0:
            self.writer = _Writers(settings.ARBOR_IMPORT_WRITERS, **self.write_kwargs)

    def add(self, where: str, draft: ConversationDraft) -> None:
        if draft.forked_from and draft.forked_from not in self.known_runs:
            self.flush()  # its fork point may be in a batch not written (committed) yet
            if self.writer is not None:
                self.writer.drain()
        self.batch.append((where, draft))
        self.size += draft.message_count + 1
        if self.size >= self.limits[0] or len(self.batch) >= self.limits[1]:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            if self.writer is not None:
                self.writer.put(self.batch)
            else:
                _write_batch(self.batch, **self.write_kwargs)
            self.batch, self.size = [], 0
        if self.progress is not None:
            self.progress(self.report, self.source.bytes_read, self.source.total_bytes)

    def finish(self) -> None:
        """Wait for the writer threads (re-raising a writer's error)."""
        if self.writer is not None:
            self.writer.finish()


class _Writers:
    """Threads that write the batches :func:`archive.importer.import_archive` hands over, each on its own database
    connection (``ARBOR_IMPORT_WRITERS`` of them), so several PostgreSQL backends index at once."""

    def __init__(self, count: int, **kwargs):
        self.kwargs = kwargs
        self.batches: queue.Queue = queue.Queue(maxsize=count + 1)
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._run, daemon=True, name=f"archive-writer-{i}") for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def put(self, batch) -> None:
        if self.error is not None:
            raise self.error
        self.batches.put(batch)

    def _run(self) -> None:
        try:
            while (batch := self.batches.get()) is not None:
                if self.error is None:
                    try:
                        _write_batch(batch, **self.kwargs)
                    except BaseException as exc:  # handed to the reading thread
                        self.error = exc
                self.batches.task_done()
        finally:
            connection.close()

    def drain(self) -> None:
        """Wait until every batch handed over so far is written (re-raising a writer's error)."""
        self.batches.join()
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        for _ in self.threads:
            self.batches.put(None)
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error

def _without_imported(batch, *, owner, job, report: ImportReport) -> list:
    """``batch`` less the conversations an earlier import already wrote (each reported as skipped)."""
    earlier = ImportedConversation.objects.filter(
        owner=owner, source_id__in={d.source_id for _, d in batch if d.source_id},
    )
    if job is not None:
        earlier = earlier.exclude(job=job)
    known = {(f, i): str(s) for f, i, s in earlier.values_list("source_format", "source_id", "session_id")
             if str(s) not in report.session_ids}
    if not known:
        return batch
    kept = []
    for where, draft in batch:
        session_id = known.get((draft.source_format, draft.source_id)) if draft.source_id else None
        if session_id:
            report.add_skipped(where, f"{ALREADY_IMPORTED} (session {session_id}); import again with --again",
                               source_id=draft.source_id, title=draft.title)
        else:
            kept.append((where, draft))
    return kept


def _without_done(batch, *, job, report: ImportReport) -> list:
    """``batch`` less what an earlier attempt of this job wrote (a resumed job; reported as skipped)."""
    done = set(ImportedConversation.objects.filter(job=job, source_where__in=[w for w, _ in batch])
               .values_list("source_where", flat=True))
    for where, draft in batch:
        if where in done:
            report.add_skipped(where, "already imported by an earlier attempt of this job",
                               source_id=draft.source_id, title=draft.title)
    return [(w, d) for w, d in batch if w not in done]


def _write_one_by_one(batch, *, owner, job, report: ImportReport, known_runs: dict) -> None:
    """Write a batch the database refused as a whole one conversation at a time, skipping (and
    reporting) each one it refuses again."""
    log.warning("import: a batch of %d conversations failed; writing them one by one", len(batch), exc_info=True)
    for item in batch:
        try:
            with transaction.atomic():
                one = _insert([item], owner=owner, job=job, known_runs=known_runs)[0]
        except DatabaseError as exc:
            where, draft = item
            report.add_skipped(where, f"the database refused it ({' '.join(str(exc).split())[:300]})",
                               source_id=draft.source_id, title=draft.title)
        else:
            _done(item, one, report, known_runs)


def _write_batch(batch, *, owner, job, report: ImportReport, resuming: bool, known_runs: dict,
                 again: bool = False) -> None:
    if not again:
        batch = _without_imported(batch, owner=owner, job=job, report=report)
    if resuming:
        batch = _without_done(batch, job=job, report=report)
    try:
        with transaction.atomic():
            written = _insert(batch, owner=owner, job=job, known_runs=known_runs)
    except DatabaseError:
        _write_one_by_one(batch, owner=owner, job=job, report=report, known_runs=known_runs)
        return
    for item, one in zip(batch, written, strict=True):
        _done(item, one, report, known_runs)


@dataclass
class _Written:
    """What :func:`_insert` wrote for one draft: the session, its runs' ``(id, depth)`` by draft index,
    and warnings about what was left out while writing (a fork point not found, a bad comparison)."""

    session_id: uuid.UUID
    runs: list[tuple[uuid.UUID, int]]
    warnings: list[str]


def _done(item: tuple[str, ConversationDraft], written: _Written, report: ImportReport, known_runs: dict) -> None:
    """After the commit: report the conversation, and remember its Arbor JSON runs for later forks."""
    where, draft = item
    draft.warnings.extend(written.warnings)
    known_runs.update((r.source_id, written.runs[i]) for i, r in enumerate(draft.runs) if r.source_id)
    report.add_imported(where, draft, written.session_id)


def _insert(batch: list[tuple[str, ConversationDraft]], *, owner, job, known_runs: dict) -> list[_Written]:
    """Bulk-insert sessions, runs, messages and provenance rows, then each session's compactions
    and other sections (:data:`conversations.signals.session_import`); returns what was written.

    Foreign keys are checked at commit (deferred on PostgreSQL and SQLite), so a session can name
    its active run before the run's row exists. Rows are built as plain dicts: on PostgreSQL they
    go in with ``COPY`` (no model instances, no giant INSERT), elsewhere through ``bulk_create``.
    """
    now = timezone.now()
    rows: dict[str, list[dict]] = {"sessions": [], "runs": [], "messages": [], "sources": []}
    written = [_rows(where, draft, rows, owner_id=owner.pk, job_id=job.pk if job is not None else None, now=now,
                     known_runs=known_runs) for where, draft in batch]
    _plan_segments(rows["runs"])
    insert_rows(Session, rows["sessions"])
    insert_rows(Run, rows["runs"])
    insert_rows(Message, rows["messages"])
    insert_rows(ImportedConversation, rows["sources"])
    for (_, draft), one in zip(batch, written, strict=True):
        write_compactions(draft.compactions, [run_id for run_id, _ in one.runs], now=now)
        if draft.sections:
            answers = session_import.send(
                sender=Session, session_id=one.session_id, owner=owner, sections=draft.sections,
                runs={r.source_id: one.runs[i][0] for i, r in enumerate(draft.runs) if r.source_id},
            )
            one.warnings.extend(warning for _, warnings in answers for warning in warnings or ())
    return written


def _rows(where: str, draft: ConversationDraft, rows: dict, *, owner_id, job_id, now, known_runs: dict) -> _Written:
    """Append the rows of one draft to ``rows``; a fork's first runs hang under its fork point
    (``known_runs``), or become roots with a warning when this import did not write it."""
    session_id = uuid.uuid4()
    run_ids = [uuid.uuid4() for _ in draft.runs]
    fork = known_runs.get(draft.forked_from) if draft.forked_from else None
    warnings = []
    if draft.forked_from and fork is None:
        warnings.append(f"forked from run {draft.forked_from!r}, which is not among the runs imported before it: "
                        "imported as a tree of its own")
    first = next((r.created_at for r in draft.runs if r.created_at), None)
    created = draft.created_at or first or now
    last = max((r.finished_at or r.created_at for r in draft.runs if r.finished_at or r.created_at), default=None)
    rows["sessions"].append({
        "id": session_id, "owner_id": owner_id, "title": draft.title[:200], "created_at": created,
        "updated_at": max(draft.updated_at or created, last or created),
        "active_run_id": run_ids[draft.active] if draft.active is not None else None,
        "forked_from_run_id": fork[0] if fork else None,
    })
    depths: list[int] = []
    for i, r in enumerate(draft.runs):
        parent, depth = (run_ids[r.parent], depths[r.parent] + 1) if r.parent is not None else (None, 0)
        if r.parent is None and r.external_parent and fork:
            parent, depth = fork[0], fork[1] + 1
        depths.append(depth)
        run_created = r.created_at or created
        rows["runs"].append({
            "id": run_ids[i], "session_id": session_id, "parent_run_id": parent, "depth": depth,
            "status": r.status, "model": r.model[:200] or "unknown", "params": r.params, "memory_id": r.memory_id,
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "usage_counted": r.usage_counted, "finish_reason": r.finish_reason, "created_at": run_created,
            "started_at": r.started_at, "first_token_at": r.first_token_at,
            "finished_at": r.finished_at or run_created, "error_type": r.error_type,
            "error_message": r.error_message,
        })
        rows["messages"].extend({
            "run_id": run_ids[i], "position": position, "role": m.role, "content": m.content, "name": m.name,
            "tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id, "metadata": m.metadata,
            "token_count": m.token_count, "created_at": m.created_at or run_created,
        } for position, m in enumerate(r.messages))
    rows["sources"].append({
        "session_id": session_id, "owner_id": owner_id, "source_format": draft.source_format,
        "source_id": draft.source_id, "job_id": job_id, "source_where": where[:300], "created_at": now,
    })
    return _Written(session_id=session_id, runs=list(zip(run_ids, depths, strict=True)), warnings=warnings)


def _plan_segments(runs: list[dict]) -> None:
    """Give each run row its ``segment`` (see :func:`conversations.models.plan_segments`): the rows
    go in by ``COPY``, past ``Run.save`` and ``RunQuerySet.bulk_create``, which would assign it."""
    ordered = sorted(runs, key=lambda r: r["depth"])
    planned = plan_segments((r["id"], r["parent_run_id"], r["depth"]) for r in ordered)
    for row, (_, segment) in zip(ordered, planned, strict=True):
        row["segment"] = segment


_PLAIN_TYPES = {
    "CharField", "TextField", "UUIDField", "IntegerField", "PositiveIntegerField", "PositiveSmallIntegerField",
    "PositiveBigIntegerField", "BigIntegerField", "SmallIntegerField", "BooleanField", "DateTimeField",
    "ForeignKey", "OneToOneField",
}


def insert_rows(model, rows: list[dict]) -> None:
    """Insert ``rows`` (``{attname: value}``; missing fields take their default) into ``model``'s table.

    PostgreSQL: one ``COPY ... FROM STDIN`` (psycopg 3). Values of Django's own plain fields go to
    psycopg as they are; any other field (JSON, a project field such as encrypted text) is
    prepared by its ``get_db_prep_save``, exactly as ``bulk_create`` would. Other databases:
    ``bulk_create``.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**row) for row in rows], batch_size=2000 if model is not Message else 5000)
        return
    fields = [f for f in model._meta.concrete_fields
              if f.get_internal_type() not in ("AutoField", "BigAutoField", "SmallAutoField")]
    given = rows[0].keys()
    plan = []
    for f in fields:
        plain = f.get_internal_type() in _PLAIN_TYPES and type(f).__module__.startswith("django.")
        default = None if f.attname in given else f.get_default()
        plan.append((f.attname, None if plain else f, f.attname in given, default))
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        write = copy.write_row
        for row in rows:
            values = []
            for attname, field, present, default in plan:
                value = row[attname] if present else default
                if field is not None:
                    value = field.get_db_prep_save(value, connection)
                values.append(value)
            write(values)
