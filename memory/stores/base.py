"""The memory store interface, the message it stores, and the algorithms every backend shares.

A *memory store* keeps one conversation's messages in order. Backends differ in where the messages
live (a Python list, a JSONL file, the database, Redis); they agree on everything here, and one
contract test suite (``tests/memory/stores/``) runs unchanged against each.

Ordering is insertion order ("chronological"); ``created_at`` is kept as given and is what the
date filters read. ``get_history(limit=N)`` returns the *newest* N messages, oldest first.
"""

from __future__ import annotations

import json
import math
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from core.messages import openai_message

ROLES = ("system", "user", "assistant", "tool")
EVICTIONS = ("fifo", "error")


class MemoryStoreError(Exception):
    """Base class of the errors a memory store raises."""


class MemoryFull(MemoryStoreError):
    """``add_message`` on a store with ``eviction="error"`` that is at its ``max_messages``/``max_tokens``."""


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_dt(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class MemoryMessage:
    """One message in the OpenAI chat format plus ``metadata`` and ``created_at``.

    ``role``: "system", "user", "assistant" or "tool". ``tool_calls``: the assistant's calls, in the
    OpenAI shape (``[{"id", "type": "function", "function": {"name", "arguments"}}]``); a "tool"
    message answers one of them through ``tool_call_id``. ``metadata``: any JSON object (filters
    match on its top-level keys). ``created_at``: an aware datetime (UTC when not given).
    ``id``: set by the store (its position key); ignored on ``add_message``.
    """

    role: str
    content: str = ""
    name: str = ""
    tool_calls: list[dict] | None = None
    tool_call_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)
    id: int | str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.content is None:
            self.content = ""
        if not isinstance(self.content, str):
            raise ValueError("content must be a string")
        if not isinstance(self.metadata, dict):
            raise ValueError("metadata must be a dict")
        self.created_at = _parse_dt(self.created_at) or _now()
        if self.created_at.tzinfo is None:
            self.created_at = self.created_at.replace(tzinfo=UTC)
        self.name = self.name or ""
        self.tool_call_id = self.tool_call_id or ""
        self.tool_calls = self.tool_calls or None

    @classmethod
    def coerce(cls, message: MemoryMessage | dict) -> MemoryMessage:
        """A MemoryMessage from itself or from an OpenAI-style dict (extra keys go to ``metadata``)."""
        if isinstance(message, MemoryMessage):
            return message
        if not isinstance(message, dict):
            raise ValueError("a message is a MemoryMessage or a dict")
        known = {"role", "content", "name", "tool_calls", "tool_call_id", "metadata", "created_at", "id"}
        data = {k: v for k, v in message.items() if k in known}
        extra = {k: v for k, v in message.items() if k not in known}
        if extra:
            data["metadata"] = {**extra, **(data.get("metadata") or {})}
        return cls(**data)

    def as_openai(self) -> dict:
        """The message as the chat completions API takes it (no metadata, no timestamps)."""
        return openai_message(self)

    def to_json(self) -> dict:
        return {
            "id": self.id, "role": self.role, "content": self.content, "name": self.name,
            "tool_calls": self.tool_calls, "tool_call_id": self.tool_call_id, "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict) -> MemoryMessage:
        keys = ("role", "content", "name", "tool_calls", "tool_call_id", "created_at", "id")
        return cls(**{k: data.get(k) for k in keys}, metadata=data.get("metadata") or {})


# --- shared algorithms ----------------------------------------------------------------------------

def select_history(
    messages: Sequence[MemoryMessage], *, limit: int | None = None, offset: int = 0, roles: Iterable[str] | None = None,
) -> list[MemoryMessage]:
    """Chronological slice counted from the newest: skip the newest ``offset``, then take up to
    ``limit`` (None: all the rest). ``roles`` filters first. Raises ValueError on negative numbers."""
    check_page(limit, offset)
    items = list(messages)
    if roles is not None:
        wanted = set(check_roles(roles))
        items = [m for m in items if m.role in wanted]
    end = len(items) - offset
    if end <= 0:
        return []
    start = 0 if limit is None else max(0, end - limit)
    return items[start:end]


def check_page(limit: int | None, offset: int) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError("limit must be a non-negative integer or None")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError("offset must be a non-negative integer")


def check_roles(roles: Iterable[str]) -> list[str]:
    roles = [roles] if isinstance(roles, str) else list(roles)
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"unknown roles: {', '.join(map(str, bad))}")
    return roles


def matches(message: MemoryMessage, *, metadata: dict | None, since: datetime | None, until: datetime | None,
            roles: set[str] | None) -> bool:
    """The filter of :meth:`MemoryStore.filter`: every ``metadata`` item equal, ``since <= created_at < until``."""
    if roles is not None and message.role not in roles:
        return False
    if since is not None and message.created_at < since:
        return False
    if until is not None and message.created_at >= until:
        return False
    if metadata:
        for key, value in metadata.items():
            if key not in message.metadata or message.metadata[key] != value:
                return False
    return True


def tool_groups(messages: Sequence[MemoryMessage]) -> list[list[MemoryMessage]]:
    """Messages cut into units a context window may not split: an assistant message with
    ``tool_calls`` together with the tool results that answer it (matched by ``tool_call_id``) form
    one unit; every other message is a unit of its own. A tool result whose call is not in
    ``messages`` (its assistant message was evicted) becomes a unit marked orphan by
    :func:`is_orphan`."""
    groups: list[list[MemoryMessage]] = []
    open_ids: set[str] = set()
    for message in messages:
        if message.role == "tool" and groups and message.tool_call_id and message.tool_call_id in open_ids:
            groups[-1].append(message)
            continue
        open_ids = set()
        if message.role == "assistant" and message.tool_calls:
            open_ids = {str(call.get("id")) for call in message.tool_calls if isinstance(call, dict)}
        groups.append([message])
    return groups


def is_orphan(group: list[MemoryMessage]) -> bool:
    return group[0].role == "tool"


def context_window(
    messages: Sequence[MemoryMessage], max_tokens: int, count: Callable[[MemoryMessage], int],
) -> list[MemoryMessage]:
    """The newest messages whose tokens (``count`` per message) add up to at most ``max_tokens``,
    oldest first, never splitting an assistant tool call from its results and never starting with
    a tool result whose call was left out. The result is a suffix of ``messages`` (minus orphans):
    it stops at the first unit that does not fit rather than skipping it.

    Raises ValueError when ``max_tokens`` is negative."""
    if not isinstance(max_tokens, int) or max_tokens < 0:
        raise ValueError("max_tokens must be a non-negative integer")
    chosen: list[list[MemoryMessage]] = []
    used = 0
    for group in reversed(tool_groups(messages)):
        if is_orphan(group):
            break  # a result without its call cannot be sent; older messages would make a gap
        cost = sum(count(m) for m in group)
        if used + cost > max_tokens:
            break
        used += cost
        chosen.append(group)
    return [m for group in reversed(chosen) for m in group]


_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text or "")]


def bm25_rank(query: str, messages: Sequence[MemoryMessage], top_k: int, *, k1: float = 1.5, b: float = 0.75
              ) -> list[tuple[MemoryMessage, float]]:
    """Okapi BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond",
    2009) over the messages' content, with the non-negative idf ``log(1 + (N - n + 0.5)/(n + 0.5))``.
    Returns up to ``top_k`` ``(message, score)`` pairs with a score above 0, best first; ties keep
    the newer message first."""
    if top_k <= 0:
        return []
    terms = set(words(query))
    if not terms or not messages:
        return []
    docs = [Counter(words(m.content)) for m in messages]
    n_docs = len(docs)
    avg_len = (sum(sum(d.values()) for d in docs) / n_docs) or 1.0
    df = {t: sum(1 for d in docs if t in d) for t in terms}
    scored = []
    for index, (message, doc) in enumerate(zip(messages, docs, strict=True)):
        length = sum(doc.values())
        score = 0.0
        for term in terms:
            tf = doc.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (n_docs - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg_len))
        if score > 0:
            scored.append((score, index, message))
    scored.sort(key=lambda item: (-item[0], -item[1]))
    return [(message, score) for score, _, message in scored[:top_k]]


def default_token_count() -> Callable[[MemoryMessage], int]:
    """Tokens of one message as :mod:`core.tokens` counts them for the configured endpoint
    (the endpoint's tokenizer when it has one, else the characters/4 estimate), template overhead included."""
    from core.tokens import TokenCounter, counter_for  # Django settings are optional here (scripts)

    counter: TokenCounter
    try:
        from django.conf import settings  # only when Django is there: the stores also serve plain scripts

        counter = counter_for(settings.OPENAI_BASE_URL)
    except Exception:  # no Django settings: estimate (scripts without a project)
        counter = TokenCounter(base_url="", _mode="estimate")
    return lambda message: counter.count_messages([message.as_openai()])


def dumps(message: MemoryMessage) -> str:
    return json.dumps(message.to_json(), ensure_ascii=False, separators=(",", ":"))


# --- the interface --------------------------------------------------------------------------------

class MemoryStore(ABC):
    """One conversation's messages. Thread-safe in every backend.

    Subclasses implement :meth:`_append`, :meth:`_all` and :meth:`clear`; they may override the
    readers for speed (the database and Redis backends do). ``token_count`` counts one message's
    tokens (default: :func:`default_token_count`); ``embedder`` (an object with
    ``embed(texts) -> (n, d) ndarray`` of unit vectors, see :mod:`memory.semantic`) makes
    :meth:`search` semantic; without one it ranks by BM25.

    ``thread_sensitive``: True for a backend that must run in Django's one sync thread when called
    from async code (the ORM); :class:`~memory.stores.AsyncMemoryStore` reads it.
    """

    thread_sensitive: bool = False

    def __init__(self, *, token_count: Callable[[MemoryMessage], int] | None = None, embedder=None):
        self._token_count = token_count
        self.embedder = embedder
        self._lock = threading.RLock()

    # -- writing
    def add_message(self, message: MemoryMessage | dict) -> MemoryMessage:
        """Append ``message`` (a MemoryMessage or an OpenAI-style dict); returns the stored copy with its ``id``.

        Raises ValueError for a malformed message and MemoryFull when a capped store refuses it."""
        message = replace(MemoryMessage.coerce(message), id=None)
        return self._append(message)

    def add_messages(self, messages: Iterable[MemoryMessage | dict]) -> list[MemoryMessage]:
        return [self.add_message(m) for m in messages]

    @abstractmethod
    def _append(self, message: MemoryMessage) -> MemoryMessage: ...

    @abstractmethod
    def clear(self) -> None:
        """Forget every message of this store."""

    # -- reading
    @abstractmethod
    def _all(self) -> list[MemoryMessage]:
        """Every message, oldest first."""

    def __len__(self) -> int:
        return len(self._all())

    def get_history(self, limit: int | None = None, offset: int = 0, roles: Iterable[str] | None = None
                    ) -> list[MemoryMessage]:
        """Messages oldest first: the newest ``limit`` (None: all) after skipping the newest
        ``offset``; ``roles`` (e.g. ``["user", "assistant"]``) filters before counting.

        Raises ValueError for a negative ``limit``/``offset`` or an unknown role."""
        return select_history(self._all(), limit=limit, offset=offset, roles=roles)

    def filter(self, *, metadata: dict | None = None, since: datetime | None = None, until: datetime | None = None,
               roles: Iterable[str] | None = None, limit: int | None = None) -> list[MemoryMessage]:
        """Messages oldest first whose ``metadata`` contains every given key with an equal value and
        whose ``created_at`` is in ``[since, until)`` (aware datetimes or ISO 8601 strings);
        ``limit`` keeps the newest matches."""
        since, until = _parse_dt(since), _parse_dt(until)
        wanted = set(check_roles(roles)) if roles is not None else None
        found = [m for m in self._all() if matches(m, metadata=metadata, since=since, until=until, roles=wanted)]
        return select_history(found, limit=limit)

    def get_context_window(self, max_tokens: int) -> list[MemoryMessage]:
        """The newest messages that fit in ``max_tokens`` tokens, oldest first, never splitting an
        assistant tool call from its results (see :func:`context_window`)."""
        return context_window(self._all(), max_tokens, self.count_tokens)

    def count_tokens(self, message: MemoryMessage) -> int:
        if self._token_count is None:
            self._token_count = default_token_count()
        return self._token_count(message)

    def search(self, query: str, top_k: int = 5) -> list[MemoryMessage]:
        """Up to ``top_k`` messages most relevant to ``query``, best first: cosine similarity of
        the store's ``embedder`` vectors when it has one, else BM25 over the words."""
        return [m for m, _ in self.search_scored(query, top_k)]

    def search_scored(self, query: str, top_k: int = 5) -> list[tuple[MemoryMessage, float]]:
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError("top_k must be a non-negative integer")
        messages = [m for m in self._all() if m.content]
        if self.embedder is None or not messages or top_k == 0 or not (query or "").strip():
            return bm25_rank(query, messages, top_k)
        import numpy as np  # only semantic search needs it; `import memory.stores` stays light

        vectors = self.embedder.embed([m.content for m in messages])
        query_vector = self.embedder.embed([query])[0]
        scores = vectors @ query_vector
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [(messages[i], float(scores[i])) for i in order]

    def as_openai(self, limit: int | None = None) -> list[dict]:
        """The history in the chat completions format, ready for ``messages=``."""
        return [m.as_openai() for m in self.get_history(limit=limit)]
