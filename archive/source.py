"""Reading an archive file as a stream of records, in bounded memory.

* A ZIP (a ChatGPT data export) is read from its ``conversations.json`` (or its
  ``conversations-NNN.json`` parts) without unpacking it to disk.
* Bytes pass through :class:`Utf8Repair`, which replaces invalid UTF-8 with U+FFFD and counts
  the replacements, so a few broken bytes cost a character rather than the file.
* JSON is parsed incrementally by ijson (the yajl2 C backend): a top-level array yields its items
  one by one, so a file of hundreds of MB never has to fit in memory; a truncated or malformed file
  yields every complete record before the break and reports where it stopped.
* JSON Lines are read line by line; a broken line is reported and the next one read.
* Before any parser sees them, bytes pass through :class:`StructureGuard`, which counts the nesting
  of ``[``/``{`` outside strings and the size of each top-level record: a file nested deeper than
  ``ARBOR_IMPORT_MAX_DEPTH`` levels or with a record over ``ARBOR_IMPORT_MAX_RECORD_BYTES`` is
  refused (:class:`ArchiveRefused`, "nested more than N levels at byte X") before the parser's
  memory can grow with it (ijson's grows with the square of the depth: 200,000 levels took 22.8 GB).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ijson
from django.conf import settings

CHUNK = 1 << 20


class ArchiveRefused(ValueError):
    """The file is built so that parsing it could exhaust memory (too deep, a record too large)."""


# The bytes that change the structure: quotes and backslashes (strings), brackets and braces; in
# JSON Lines also the line feed (a record's end, whatever state a broken line left).
_STRUCTURE = re.compile(rb'["\\\[\]{}]')
_STRUCTURE_LINES = re.compile(rb'["\\\[\]{}\n]')


class StructureGuard(io.RawIOBase):
    """A raw byte stream that passes ``raw``'s bytes on unchanged while it tracks the JSON nesting
    depth (brackets and braces outside strings) and the bytes of the current record (a value one
    level below ``record_depth``: 1 for the items of a top-level array, 0 for JSON Lines or a lone
    object). Raises :class:`ArchiveRefused` as soon as the depth passes ``max_depth`` or a record
    passes ``max_record_bytes``, naming the byte offset. Linear time; constant memory."""

    def __init__(self, raw, *, max_depth: int, max_record_bytes: int, record_depth: int = 1, lines: bool = False):
        self.raw, self.max_depth, self.max_record_bytes = raw, max_depth, max_record_bytes
        self.record_depth = record_depth
        self.pattern = _STRUCTURE_LINES if lines else _STRUCTURE
        self.depth = 0
        self.offset = 0  # bytes passed on
        self.record_start: int | None = None
        self._in_string = False
        self._escaped = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self._scan(bytes(memoryview(buffer)[:n]))
        return n

    def _scan(self, data: bytes) -> None:
        skip_until = 1 if self._escaped else 0  # a backslash ended the last chunk
        self._escaped = False
        for match in self.pattern.finditer(data):
            at = match.start()
            if at < skip_until:
                continue
            char = data[at]
            if char == 0x0A:  # JSON Lines: a line feed ends the record
                self.depth, self._in_string, self.record_start = 0, False, None
            elif self._in_string:
                skip_until = self._string_byte(char, at, len(data)) or skip_until
            else:
                self._structure_byte(char, at)
        self.offset += len(data)
        if self.record_start is not None and self.offset - self.record_start > self.max_record_bytes:
            raise ArchiveRefused(f"a single record is larger than {self.max_record_bytes} bytes (from byte "
                                 f"{self.record_start}; ARBOR_IMPORT_MAX_RECORD_BYTES); it was not imported")

    def _string_byte(self, char: int, at: int, size: int) -> int:
        """A quote or backslash at ``at`` (of a chunk of ``size`` bytes) inside a string. Returns the
        offset the scan skips to (past an escaped byte in this chunk), else 0."""
        if self._escaped:
            self._escaped = False
        elif char == 0x5C:  # backslash: the next byte is escaped
            if at + 1 < size:
                return at + 2
            self._escaped = True
        elif char == 0x22:
            self._in_string = False
        return 0

    def _structure_byte(self, char: int, at: int) -> None:
        """A quote, bracket or brace at ``at`` outside strings: the depth and the record's start."""
        if char == 0x22:
            self._in_string = True
        elif char in (0x5B, 0x7B):  # [ {
            self.depth += 1
            if self.depth > self.max_depth:
                raise ArchiveRefused(f"the file is nested more than {self.max_depth} levels at byte "
                                     f"{self.offset + at} (ARBOR_IMPORT_MAX_DEPTH); it was not imported")
            if self.depth == self.record_depth + 1:
                self.record_start = self.offset + at
        elif char in (0x5D, 0x7D):  # ] }
            self.depth = max(0, self.depth - 1)
            if self.depth == self.record_depth:
                self.record_start = None


def _guarded(stream, *, kind: str) -> io.BufferedReader:
    """``stream`` behind a :class:`StructureGuard` (limits from the settings) for a file of ``kind``."""
    guard = StructureGuard(stream, max_depth=settings.ARBOR_IMPORT_MAX_DEPTH,
                           max_record_bytes=settings.ARBOR_IMPORT_MAX_RECORD_BYTES,
                           record_depth=1 if kind == "array" else 0, lines=kind == "jsonl")
    return io.BufferedReader(guard, buffer_size=CHUNK)


class Utf8Repair(io.RawIOBase):
    """A raw byte stream that yields valid UTF-8: invalid sequences become U+FFFD (counted in
    ``replaced``), a leading BOM is dropped. ``consumed`` counts the source bytes read."""

    def __init__(self, raw):
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.replaced = 0
        self.consumed = 0
        self._pending = b""
        self._first = True
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending and not self._eof:
            data = self.raw.read(CHUNK)
            self.consumed += len(data)
            if not data:
                self._eof = True
                text = self.decoder.decode(b"", final=True)
            else:
                text = self.decoder.decode(data)
                if self._first:
                    self._first = False
                    text = text.removeprefix("\ufeff")
            if "\ufffd" in text:
                self.replaced += max(0, text.count("\ufffd") - data.count(b"\xef\xbf\xbd"))
            self._pending = text.encode("utf-8", "surrogatepass")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


@dataclass
class SourceProblem:
    """Something wrong with the file itself (not one conversation): where and what."""

    where: str
    message: str


@dataclass
class Source:
    """An opened archive: ``records()`` yields top-level records; ``problems`` fills as it reads."""

    name: str
    total_bytes: int
    _streams: list = field(default_factory=list)
    problems: list[SourceProblem] = field(default_factory=list)
    _repairs: list[Utf8Repair] = field(default_factory=list)
    _done_bytes: int = 0
    first_line_json: bool = False

    @property
    def bytes_read(self) -> int:
        return self._done_bytes + sum(r.consumed for r in self._repairs[-1:])

    @property
    def replaced_characters(self) -> int:
        return sum(r.replaced for r in self._repairs)

    def close(self) -> None:
        for closer in self._streams:
            with contextlib.suppress(Exception):  # closing is best effort
                closer.close()


def open_source(path: str | Path, *, name: str | None = None) -> tuple[Source, list]:
    """The source and the list of ``(member name, opener)`` to read in order.

    A ZIP contributes its ``conversations*.json`` members (ChatGPT) or, failing that, every
    ``.json``/``.jsonl`` member; any other file is read as it is.
    """
    path = Path(path)
    name = name or path.name
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = [i for i in archive.infolist() if not i.is_dir()]
        wanted = [i for i in members if Path(i.filename).name == "conversations.json"]
        if not wanted:
            wanted = sorted((i for i in members if Path(i.filename).name.startswith("conversations")
                             and i.filename.endswith(".json")), key=lambda i: i.filename)
        if not wanted:
            wanted = [i for i in members if i.filename.endswith((".json", ".jsonl"))
                      and not Path(i.filename).name.startswith(".")]
        source = Source(name=name, total_bytes=sum(i.file_size for i in wanted) or 1)
        source._streams.append(archive)
        openers = [(f"{name}:{i.filename}", (lambda info=i: archive.open(info))) for i in wanted]
        if not wanted:
            source.problems.append(SourceProblem(name, "the ZIP holds no conversations.json nor any JSON file"))
        return source, openers
    source = Source(name=name, total_bytes=max(path.stat().st_size, 1))
    return source, [(name, lambda: open(path, "rb"))]  # closed by iter_records


def peek_kind(buffered: io.BufferedReader) -> tuple[str, dict | None]:
    """``("array", None)``, ``("jsonl", first_object)``, ``("object", None)`` or ``("empty", None)``.

    JSON Lines is told from one JSON object by its first line parsing on its own.
    """
    head = buffered.peek(CHUNK)[:CHUNK]
    stripped = head.lstrip()
    if not stripped:
        return "empty", None
    if stripped[:1] == b"[":
        return "array", None
    if stripped[:1] == b"{":
        line, newline, _rest = stripped.partition(b"\n")
        if newline:
            try:
                first = json.loads(line)
            except ValueError:
                return "object", None
            if isinstance(first, dict):
                return "jsonl", first
        return "object", None
    return "unknown", None


def iter_records(source: Source, openers, *, lines: bool = False) -> Iterator[tuple[str, object]]:
    """Yield ``(where, record)`` for every top-level record of every member, in order.

    ``where`` names the member and the record's index (or line). A record that cannot be parsed
    (a broken JSON line) is yielded as ``(where, SourceProblem)``; the end of a truncated or
    malformed JSON document is recorded in ``source.problems`` and reading goes on with the next
    member. ``lines``: read a file that starts with ``{`` as JSON Lines even if its first line is
    longer than the look-ahead.
    """
    for member, opener in openers:
        raw = opener()
        source._streams.append(raw)
        repair = Utf8Repair(raw)
        source._repairs.append(repair)
        buffered = io.BufferedReader(repair, buffer_size=CHUNK)
        try:
            kind, _first = peek_kind(buffered)
            if lines and kind in ("object", "jsonl"):
                kind = "jsonl"
            if kind == "empty":
                source.problems.append(SourceProblem(member, "the file is empty"))
            elif kind == "unknown":
                source.problems.append(SourceProblem(member, "this is not JSON (it does not start with [ or {)"))
            elif kind == "jsonl":
                source.first_line_json = True
                yield from _jsonl(member, _guarded(buffered, kind=kind))
            else:
                prefix = "item" if kind == "array" else ""
                index = 0
                try:
                    for record in ijson.items(_guarded(buffered, kind=kind), prefix, use_float=True):
                        yield f"{member}#{index}", record
                        index += 1
                except ijson.JSONError as exc:
                    what = "ends early (truncated JSON)" if "premature EOF" in str(exc) \
                        else f"has a JSON syntax error ({' '.join(str(exc).split())[:120]})"
                    source.problems.append(SourceProblem(
                        f"{member}#{index}",
                        f"the file {what} after {index} complete record(s), at byte {repair.consumed}: "
                        f"the rest of the file was not read",
                    ))
        finally:
            source._done_bytes += repair.consumed
            repair.consumed = 0
            raw.close()


def _jsonl(member: str, buffered) -> Iterator[tuple[str, object]]:
    for number, line in enumerate(buffered, start=1):
        if not line.strip():
            continue
        try:
            yield f"{member}:{number}", json.loads(line)
        except ValueError as exc:
            cut = not line.endswith(b"\n")
            yield f"{member}:{number}", SourceProblem(
                f"{member}:{number}", "the last line is cut off" if cut else f"line {number} is not valid JSON ({exc})",
            )
