"""The report of an import: what was imported and skipped (and why), counted and capped."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .drafts import ConversationDraft

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


def record_identity(record) -> tuple[str, str]:
    """Best-effort source id and title of a raw record, for the report of a skipped one."""
    if isinstance(record, list):
        record = record[0] if record and isinstance(record[0], dict) else {}
    if not isinstance(record, dict):
        return "", ""
    chat = record.get("chat") if isinstance(record.get("chat"), dict) else {}
    source_id = record.get("conversation_id") or record.get("id") or record.get("session_id") or chat.get("id") or ""
    title = record.get("title") or chat.get("title") or ""
    return str(source_id)[:200], str(title)[:200]
