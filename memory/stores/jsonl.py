"""``JSONLMemoryStore``: one JSON object per line in a file, appended under a file lock.

Format: each line is :meth:`MemoryMessage.to_json` (``id``, ``role``, ``content``, ``name``,
``tool_calls``, ``tool_call_id``, ``metadata``, ``created_at`` as ISO 8601), ``id`` counting up
from 1. Appending writes one line; the file is never rewritten per message. ``clear()`` swaps in
a new file atomically (``os.replace``). Every file starts with a header line
``{"arbor_memory": 1, "generation": "<uuid4>"}``, new at each ``clear()``. Readers keep the parsed
messages and the byte offset they have read up to, and read only what was appended since; they
notice a ``clear()`` by another process through the header's generation (and the inode).

Locking: `filelock <https://py-filelock.readthedocs.io>`_ (``flock`` on ``<path>.lock``) around
every append and clear, so threads and processes may share a file. A line cut short by a crash is
skipped (and logged), never glued to the next one.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import replace
from pathlib import Path

from filelock import FileLock

from .base import MemoryMessage, MemoryStore, dumps

log = logging.getLogger(__name__)


class JSONLMemoryStore(MemoryStore):
    """Messages in the JSONL file at ``path`` (created with its folder on first write).

    ``fsync=True`` makes each append durable before it returns (slower: one disk flush per message).
    ``lock_timeout``: seconds to wait for another writer, then ``filelock.Timeout``.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False, lock_timeout: float = 30.0, **kwargs):
        super().__init__(**kwargs)
        self.path = Path(path)
        self.fsync = fsync
        self._file_lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout)
        self._messages: list[MemoryMessage] = []
        self._offset = 0
        self._inode: int | None = None
        self._last_id = 0
        self._generation: str | None = None

    # -- reading the tail of the file
    def _refresh(self) -> None:
        """Read lines appended since the last call (caller holds ``self._lock``)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._reset(None)
            return
        with os.fdopen(fd, "rb") as fh:
            stat = os.fstat(fh.fileno())
            generation = _generation(os.pread(fh.fileno(), 200, 0))
            if stat.st_ino != self._inode or stat.st_size < self._offset or generation != self._generation:
                self._reset(stat.st_ino)
                self._generation = generation
            if stat.st_size == self._offset:
                return
            fh.seek(self._offset)
            chunk = fh.read(stat.st_size - self._offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return  # a line being written: wait for its newline
        for line in chunk[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict) and "arbor_memory" in data:
                    continue
                message = MemoryMessage.from_json(data)
            except (ValueError, TypeError) as exc:
                log.warning("%s: skipped a malformed line near byte %d: %s", self.path, self._offset, exc)
                continue
            self._messages.append(message)
            if isinstance(message.id, int):
                self._last_id = max(self._last_id, message.id)
        self._offset += end + 1

    def _reset(self, inode: int | None) -> None:
        self._messages, self._offset, self._inode, self._last_id, self._generation = [], 0, inode, 0, None

    def _all(self) -> list[MemoryMessage]:
        with self._lock:
            self._refresh()
            return list(self._messages)

    # -- writing
    def _append(self, message: MemoryMessage) -> MemoryMessage:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._file_lock:
            self._refresh()
            stored = replace(message, id=self._last_id + 1)
            data = dumps(stored).encode() + b"\n"
            with open(self.path, "ab") as fh:
                if fh.tell() == 0:
                    data = _header() + data
                elif self._ends_without_newline():
                    data = b"\n" + data  # a crash cut the last line short: keep ours separate
                fh.write(data)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            self._refresh()
            return stored

    def _ends_without_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"

    def clear(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._file_lock:
            tmp = self.path.with_name(self.path.name + ".clearing")
            tmp.write_bytes(_header())
            os.replace(tmp, self.path)
            self._refresh()


def _header() -> bytes:
    return json.dumps({"arbor_memory": 1, "generation": uuid.uuid4().hex}).encode() + b"\n"


def _generation(head: bytes) -> str | None:
    """The generation in a file's header line (None for a file without one)."""
    line = head.split(b"\n", 1)[0]
    if not line.startswith(b'{"arbor_memory"'):
        return None
    try:
        return json.loads(line).get("generation")
    except ValueError:
        return None
