"""What every importer produces before anything is written: a conversation as a tree of *draft* runs.

A :class:`ConversationDraft` is complete and validated in memory (runs parents first, depths
computed, texts cleaned) before the writer touches the database, so a conversation either becomes
rows as a whole or is skipped with a reason (:class:`Skip`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime


class Skip(Exception):
    """A conversation that cannot be imported; ``reason`` says why (it goes into the report)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class MessageDraft:
    """One message of a run (``Message``): role is system, user, assistant or tool."""

    role: str
    content: str = ""
    name: str = ""
    tool_calls: list | None = None
    tool_call_id: str = ""
    metadata: dict = field(default_factory=dict)
    created_at: datetime | None = None
    token_count: int | None = None
    # Not stored on the message: what the run that ends with it takes (model, usage, finish reason).
    model: str = ""
    usage: dict | None = None
    finish_reason: str = ""


@dataclass
class RunDraft:
    """One turn (``Run``): ``parent`` is the index of the parent run in the conversation's list."""

    messages: list[MessageDraft]
    parent: int | None = None
    depth: int = 0
    model: str = "unknown"
    params: dict = field(default_factory=dict)
    memory_id: str = "default"
    status: str = "succeeded"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_counted: bool = False
    finish_reason: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    first_token_at: datetime | None = None
    finished_at: datetime | None = None
    error_type: str = ""
    error_message: str = ""
    # Arbor JSON only: the run's id in the file (compactions, comparisons and forks name runs by it),
    # and the id of a parent run outside this session (a fork's first runs hang under its fork point).
    source_id: str = ""
    external_parent: str = ""


@dataclass
class MessageRef:
    """A message named by its run (index in the conversation's runs) and position (Arbor JSON)."""

    run: int
    position: int


@dataclass
class CompactionDraft:
    """A compaction marker of an Arbor JSON session (:class:`memory.models.Compaction`): ``run`` is
    the index of the run it is attached to, ``base`` the index of the earlier compaction it built
    on; message ids are replaced by :class:`MessageRef` until the messages are written."""

    run: int
    memory_id: str = "default"
    status: str = "ready"
    base: int | None = None
    policy: dict = field(default_factory=dict)
    applied: list = field(default_factory=list)
    from_depth: int = 0
    replaced: list[tuple[MessageRef, str]] = field(default_factory=list)
    dropped: list[MessageRef] = field(default_factory=list)
    replaced_messages: list[MessageRef] = field(default_factory=list)
    summary: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usable_window: int = 0
    tokens_before: int = 0
    tokens_after: int | None = None
    utilisation_before: float = 0.0
    utilisation_after: float | None = None
    error: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class ConversationDraft:
    """A session to create: its runs (parents before children), the active run and what was repaired.

    Arbor JSON may add: ``forked_from`` (the file's id of a run of a session imported before this
    one from the same file: this session is a fork of it), ``compactions`` and ``sections`` (other
    apps' parts of the session record, e.g. ``comparisons``, written by the receivers of
    :data:`conversations.signals.session_import`).
    """

    source_format: str
    source_id: str
    title: str
    runs: list[RunDraft]
    active: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    forked_from: str = ""
    compactions: list[CompactionDraft] = field(default_factory=list)
    sections: dict = field(default_factory=dict)

    @property
    def message_count(self) -> int:
        return sum(len(r.messages) for r in self.runs)


# --- cleaning ---------------------------------------------------------------------------------------

def repair_text(value) -> str:
    """A string PostgreSQL and SQLite both store: NUL bytes and lone surrogates become U+FFFD.
    Never raises (an import repairs what it reads; :func:`core.text.clean_text` refuses input instead).

    Non-strings (numbers, None) become their text; None becomes "".
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from \ud800-style JSON escapes
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def repair_json(value, depth: int = 0):
    """JSON-able data with every string repaired (jsonb rejects ``\\u0000``); nesting capped at 20."""
    if depth > 20:
        return None
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, dict):
        return {repair_text(k): repair_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repair_json(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float):
        return value
    return repair_text(value)  # Decimal from ijson, anything else


_MIN_EPOCH, _MAX_EPOCH = 0, 4102444800  # 1970 .. 2100


def parse_time(value) -> datetime | None:
    """A datetime (UTC) from epoch seconds/milliseconds/microseconds/nanoseconds or ISO 8601; None if unreadable."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        value = number
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None
    for _ in range(3):  # ms, µs, ns
        if seconds > _MAX_EPOCH:
            seconds /= 1000
    if not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def clean_int(value) -> int | None:
    """A non-negative int below 2**31 (the columns are PositiveIntegerField), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**31 else None


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def title_from(runs: list[RunDraft]) -> str:
    for run in runs:
        for message in run.messages:
            if message.role == "user" and message.content.strip():
                return short(" ".join(message.content.split()), 60)
    return "Imported conversation"
