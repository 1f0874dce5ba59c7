"""Reading an archive file as a stream of records, in bounded memory.

* A ZIP (a ChatGPT data export) is read from its ``conversations.json`` (or its
  ``conversations-NNN.json`` parts) without unpacking it to disk.
* Bytes pass through :class:`Utf8Repair`, which replaces invalid UTF-8 with U+FFFD and counts
  the replacements, so a few broken bytes cost a character rather than the file.
* JSON is parsed incrementally by ijson (the yajl2 C backend): a top-level array yields its items
  one by one, so a file of hundreds of MB never has to fit in memory; a truncated or malformed file
  yields every complete record before the break and reports where it stopped.
* JSON Lines are read line by line; a broken line is reported and the next one read.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ijson

CHUNK = 1 << 20


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
                yield from _jsonl(member, buffered)
            else:
                prefix = "item" if kind == "array" else ""
                index = 0
                try:
                    for record in ijson.items(buffered, prefix, use_float=True):
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
