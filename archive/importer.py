"""Importing archives (worker side): read a file as a stream, convert each conversation, bulk-insert
in batches; and running an uploaded file's import job (:func:`import_job_execute`, called by the
Celery task ``archive.import_job``).

Each conversation imports atomically or not at all: it is converted and validated in memory first
(:mod:`archive.formats`), then written inside a transaction with the other conversations of its
batch; if the batch fails in the database, its conversations are written again one by one, each in
its own transaction, so one bad conversation is skipped with the database's reason and the others
land. A crash loses at most the batch in flight, never part of a conversation.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from conversations.models import Message, Run, Session, plan_segments
from conversations.signals import session_import
from core import queue as task_queue
from core.errors import InvalidInput

from . import formats
from .compactions import write_compactions
from .drafts import ConversationDraft, Skip
from .models import ImportedConversation, ImportJob, JobStatus
from .source import ArchiveRefused, SourceProblem, iter_records, open_source

log = logging.getLogger(__name__)

FORMAT_CHOICES = ("auto", *formats.FORMATS)
MAX_MESSAGES_PER_RUN = 32_000  # Message.position is a PositiveSmallIntegerField
REPORT_IMPORTED_LIMIT = 200
REPORT_SKIPPED_LIMIT = 1000
ALREADY_IMPORTED = "already imported"  # how the report's reason begins for a conversation imported before


@dataclass
class ImportReport:
    """What an import did. ``imported_items``/``skipped_items`` are capped (counts are not)."""

    source: str
    format: str = "auto"
    imported: int = 0
    skipped: int = 0
    runs: int = 0
    messages: int = 0
    with_warnings: int = 0
    imported_items: list[dict] = field(default_factory=list)
    skipped_items: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    warning_counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    session_ids: set = field(default_factory=set, repr=False)  # made by this import (not reported)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_imported(self, where: str, draft: ConversationDraft, session_id) -> None:
        with self._lock:
            self._add_imported(where, draft, session_id)

    def _add_imported(self, where: str, draft: ConversationDraft, session_id) -> None:
        self.imported += 1
        self.session_ids.add(str(session_id))
        self.runs += len(draft.runs)
        self.messages += draft.message_count
        if draft.warnings:
            self.with_warnings += 1
            for warning in draft.warnings:
                self.warning_counts[_warning_kind(warning)] += 1
        if len(self.imported_items) < REPORT_IMPORTED_LIMIT:
            self.imported_items.append({
                "where": where, "source_id": draft.source_id, "title": draft.title, "session_id": str(session_id),
                "runs": len(draft.runs), "messages": draft.message_count, "warnings": draft.warnings,
            })

    def add_skipped(self, where: str, reason: str, *, source_id: str = "", title: str = "") -> None:
        with self._lock:
            self.skipped += 1
            if len(self.skipped_items) < REPORT_SKIPPED_LIMIT:
                self.skipped_items.append({"where": where, "source_id": source_id, "title": title, "reason": reason})

    def as_json(self) -> dict:
        return {
            "source": self.source, "format": self.format, "imported": self.imported, "skipped": self.skipped,
            "runs": self.runs, "messages": self.messages, "with_warnings": self.with_warnings,
            "imported_items": self.imported_items, "skipped_items": self.skipped_items, "problems": self.problems,
            "warning_counts": dict(self.warning_counts), "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        return (f"{self.imported} conversation(s) imported ({self.runs} runs, {self.messages} messages), "
                f"{self.skipped} skipped, {len(self.problems)} problem(s) with the file, in {self.seconds:.1f} s")


def _warning_kind(warning: str) -> str:
    """A warning without its numbers, to count warnings of one kind across conversations."""
    return " ".join("N" if w.strip("()").isdigit() else w for w in warning.split())[:200]


def _record_identity(record) -> tuple[str, str]:
    """Best-effort source id and title of a raw record, for the report of a skipped one."""
    if isinstance(record, list):
        record = record[0] if record and isinstance(record[0], dict) else {}
    if not isinstance(record, dict):
        return "", ""
    chat = record.get("chat") if isinstance(record.get("chat"), dict) else {}
    source_id = record.get("conversation_id") or record.get("id") or record.get("session_id") or chat.get("id") or ""
    title = record.get("title") or chat.get("title") or ""
    return str(source_id)[:200], str(title)[:200]


# --- the import -------------------------------------------------------------------------------------

def import_archive(
    *,
    path: str | Path,
    owner,
    format: str = "auto",
    name: str | None = None,
    job: ImportJob | None = None,
    progress: Callable[[ImportReport, int, int], None] | None = None,
    batch_messages: int = 20_000,
    batch_conversations: int = 1_000,
    again: bool = False,
) -> ImportReport:
    """Import every conversation of the file at ``path`` for ``owner``; returns the report.

    ``format``: ``auto`` (told from the first record) or one of :data:`archive.formats.FORMATS`.
    ``progress(report, bytes_read, total_bytes)`` is called after every batch. With ``job``, each
    imported session is recorded under it, and a job that is run again (its worker died) skips the
    records it had already written. A conversation this owner already imported from the same
    format and source id (by an earlier import) is skipped unless ``again``. Never raises for bad
    content: bad records and a bad file end up in the report. Raises InvalidInput for an unknown
    ``format`` and OSError for an unreadable path.

    On PostgreSQL, outside a transaction, batches are written by ``ARBOR_IMPORT_WRITERS`` threads
    (each on its own connection) while this one parses the next batch: the database's work (the
    full-text index of every message, foreign key checks) overlaps with parsing and runs on
    several backends instead of following it on one.
    """
    if format not in FORMAT_CHOICES:
        raise InvalidInput(f"unknown format {format!r}: choose one of {', '.join(FORMAT_CHOICES)}")
    started = time.perf_counter()
    source, openers = open_source(path, name=name)
    report = ImportReport(source=source.name, format=format)
    batches = _Batches(source=source, report=report, progress=progress, limits=(batch_messages, batch_conversations),
                       owner=owner, job=job, resuming=job is not None and job.attempts > 1, again=again)
    try:
        for where, draft in _drafts(_records(source, openers, format), report=report, format=format):
            batches.add(where, draft)
        batches.flush()
    finally:
        source.close()
        batches.finish()
    if progress is not None and batches.writer is not None:
        progress(report, source.bytes_read, source.total_bytes)
    _note_source_problems(report, source)
    report.seconds = time.perf_counter() - started
    return report


def _records(source, openers, format: str):
    """``(where, record)`` of the file; JSON Lines run records grouped into sessions."""
    records = iter_records(source, openers, lines=format == "jsonl")
    if format in ("jsonl", "auto"):
        records = formats.jsonl_groups(records)
    return records


def _detect(record) -> str | None:
    """The format of a record (a JSON Lines group: of its first run), or None."""
    fmt = formats.detect(record)
    if fmt is None and isinstance(record, list) and record and all(isinstance(r, dict) for r in record):
        fmt = formats.detect(record[0])
    return fmt


def _drafts(records, *, report: ImportReport, format: str) -> Iterator[tuple[str, ConversationDraft]]:
    """``(where, draft)`` of every record that converts; the others go to ``report`` as skipped
    with their reason. With ``format`` auto, the first recognised record sets ``report.format``."""
    detected = None if format == "auto" else format
    for where, record in records:
        if isinstance(record, SourceProblem):
            report.add_skipped(where, record.message)
            continue
        fmt = detected or _detect(record)
        if fmt is None:
            source_id, title = _record_identity(record)
            report.add_skipped(where, "not a conversation of any known format", source_id=source_id, title=title)
            continue
        if detected is None:
            detected = report.format = fmt
        draft = _convert_or_report(fmt, where, record, report)
        if draft is not None:
            yield where, draft


def _convert_or_report(fmt: str, where: str, record, report: ImportReport) -> ConversationDraft | None:
    """The record's draft, or None with the reason in ``report`` (never raises for bad content)."""
    try:
        return _convert(fmt, record)
    except Skip as skip:
        reason = skip.reason
    except Exception as exc:  # one odd record must not stop the file
        log.exception("import: converting %s failed", where)
        reason = f"could not be read ({type(exc).__name__}: {exc})"
    source_id, title = _record_identity(record)
    report.add_skipped(where, reason, source_id=source_id, title=title)
    return None


def _note_source_problems(report: ImportReport, source) -> None:
    """Add the file's own problems (a cut, a syntax error, replaced bytes) to the report."""
    report.problems.extend({"where": p.where, "message": p.message} for p in source.problems)
    if source.replaced_characters:
        report.problems.append({
            "where": source.name,
            "message": f"{source.replaced_characters} invalid UTF-8 byte sequence(s) replaced with U+FFFD",
        })


class _Batches:
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
    """Threads that write the batches :func:`import_archive` hands over, each on its own database
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


def _convert(fmt: str, record) -> ConversationDraft:
    if fmt == "jsonl" and isinstance(record, dict):
        record = [record]
    draft = formats.CONVERTERS[fmt](record)
    for run in draft.runs:
        if len(run.messages) > MAX_MESSAGES_PER_RUN:
            raise Skip(f"a run has {len(run.messages)} messages (at most {MAX_MESSAGES_PER_RUN})")
    return draft


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


# --- import jobs in the worker ------------------------------------------------------------------------

def _claim(job_id) -> ImportJob | None:
    """queued → running, or take over a running job whose worker went silent (conditional UPDATE)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.ARBOR_IMPORT_STALE_SECONDS)
    jobs = ImportJob.objects.filter(pk=job_id)
    claimed = jobs.filter(Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale)).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1,
    )
    return ImportJob.objects.select_related("owner").get(pk=job_id) if claimed else None


def import_job_execute(*, job_id) -> ImportJob | None:
    """Run an import job in a worker: progress is written to the job as it goes, the report at the
    end; the uploaded file is deleted when the job is done. Does nothing for a job already taken."""
    job = _claim(job_id)
    if job is None:
        log.info("import job %s: not claimable", job_id)
        return None
    last = 0.0

    def progress(report: ImportReport, done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last < 0.3:
            return
        last = time.monotonic()
        ImportJob.objects.filter(pk=job.pk).update(
            bytes_read=done, imported=report.imported, skipped=report.skipped, heartbeat_at=timezone.now(),
        )

    try:
        report = import_archive(path=job.path, owner=job.owner, format=job.format, name=job.filename, job=job,
                                progress=progress)
    except ArchiveRefused as exc:
        log.warning("import job %s: the file was refused: %s", job.pk, exc)
        ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error=_failure(exc)[:2000],
                                                   finished_at=timezone.now())
    except Exception as exc:  # the job records the failure; the page shows it
        log.exception("import job %s failed", job.pk)
        ImportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.FAILED, error=_failure(exc)[:2000], finished_at=timezone.now(),
        )
    else:
        ImportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED, report=report.as_json(), imported=report.imported, skipped=report.skipped,
            bytes_read=job.size_bytes, finished_at=timezone.now(),
        )
    Path(job.path).unlink(missing_ok=True)
    job.refresh_from_db()
    return job


def _failure(exc: Exception) -> str:
    """A job's ``error`` for the exception that ended it."""
    if isinstance(exc, MemoryError):
        return (f"The import needed more memory than its limit of {settings.ARBOR_IMPORT_MEMORY_LIMIT_MB} MiB "
                "(ARBOR_IMPORT_MEMORY_LIMIT_MB); the file was not fully imported.")
    if isinstance(exc, ArchiveRefused):
        return f"The file was refused: {exc}."
    return f"{type(exc).__name__}: {exc}"


MAX_IMPORT_ATTEMPTS = 2  # a job whose worker went silent is retried once, then failed


def reap_stale_import_jobs() -> tuple[int, int]:
    """Import jobs ``running`` with no heartbeat for ARBOR_IMPORT_STALE_SECONDS: sent again (the
    task takes it over) when tried fewer than MAX_IMPORT_ATTEMPTS times, else failed with the
    reason. Returns ``(retried, failed)``."""
    stale = timezone.now() - timedelta(seconds=settings.ARBOR_IMPORT_STALE_SECONDS)
    silent = ImportJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale)
    failed = silent.filter(attempts__gte=MAX_IMPORT_ATTEMPTS).update(
        status=JobStatus.FAILED, finished_at=timezone.now(),
        error=(f"The import stopped: the worker importing it went silent for over "
               f"{settings.ARBOR_IMPORT_STALE_SECONDS} s, {MAX_IMPORT_ATTEMPTS} times (it may have run out of "
               "memory or been restarted); the file was not fully imported."),
    )
    retried = 0
    for job_id in silent.filter(attempts__lt=MAX_IMPORT_ATTEMPTS).values_list("pk", flat=True):
        task_queue.send(task_queue.IMPORT_JOB, str(job_id), queue=settings.ARBOR_IMPORT_QUEUE)
        retried += 1
    if retried or failed:
        log.warning("import jobs gone silent: %s sent again, %s failed", retried, failed)
    return retried, failed
