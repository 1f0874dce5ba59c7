"""Importing archives (worker side): read a file as a stream, convert each conversation, write the
conversations in batches.

Each conversation imports atomically or not at all: it is converted and validated in memory first
(:mod:`archive.formats`), then written by :mod:`archive.writer` inside a transaction with the other
conversations of its batch; if the batch fails in the database, its conversations are written again
one by one, each in its own transaction, so one bad conversation is skipped with the database's
reason and the others land. A crash loses at most the batch in flight, never part of a conversation.
Running an uploaded file's job is :mod:`archive.jobs`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from core.errors import InvalidInput

from . import formats
from .drafts import ConversationDraft, Skip
from .models import ImportJob
from .report import ImportReport, record_identity
from .source import SourceProblem, iter_records, open_source
from .writer import Batches

log = logging.getLogger(__name__)

FORMAT_CHOICES = ("auto", *formats.FORMATS)
MAX_MESSAGES_PER_RUN = 32_000  # Message.position is a PositiveSmallIntegerField


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
    batches = Batches(source=source, report=report, progress=progress, limits=(batch_messages, batch_conversations),
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
            source_id, title = record_identity(record)
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
    source_id, title = record_identity(record)
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


def _convert(fmt: str, record) -> ConversationDraft:
    if fmt == "jsonl" and isinstance(record, dict):
        record = [record]
    draft = formats.CONVERTERS[fmt](record)
    for run in draft.runs:
        if len(run.messages) > MAX_MESSAGES_PER_RUN:
            raise Skip(f"a run has {len(run.messages)} messages (at most {MAX_MESSAGES_PER_RUN})")
    return draft
