"""Search over a user's past messages: which messages are searchable, semantic search (meaning,
through :mod:`memory.semantic`'s embedders and vector index) and keyword search (words, in the
database), each hit linking to the branch its message stands on.

:mod:`memory.semantic` knows embedders, vectors and ranking; this module knows the conversation
tables (which messages belong to whom, and which runs are finished).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

import numpy as np
from django.conf import settings
from django.db import connection
from django.urls import reverse

from conversations.models import FINISHED_STATUSES, Message
from core.dates import parse_day, within_days
from core.errors import InvalidInput
from core.fields import encryption_enabled
from core.text import clean_text
from memory import semantic
from memory.semantic import SemanticSearchUnavailable

SEARCHABLE_ROLES = ("user", "assistant")
MODES = ("semantic", "keyword")
MAX_QUERY_CHARS = 1000
MAX_TOP_K = 100
KEYWORD_UNAVAILABLE = (
    "Keyword search is unavailable while encryption at rest is on: the database holds only encrypted "
    "text (ARBOR_MEMORY_ENCRYPTION_KEYS is set). Semantic search still works."
)

__all__ = ["SEARCHABLE_ROLES", "KEYWORD_UNAVAILABLE", "MODES", "Search", "SearchFilters", "SearchHit",
           "SemanticSearchUnavailable", "backfill", "branch_url", "find", "keyword_search", "parse_search",
           "search_messages", "user_messages"]


@dataclass
class SearchHit:
    """One message found: where it stands (``session_id``, ``run_id``) and a link to that branch."""

    message_id: int
    run_id: str
    session_id: str
    session_title: str
    role: str
    content: str
    score: float
    created_at: datetime
    url: str

    @classmethod
    def of(cls, message: Message, score: float) -> SearchHit:
        """The hit for ``message`` (its run and session selected) with ``score``."""
        return cls(
            message_id=message.pk, run_id=str(message.run_id), session_id=str(message.run.session_id),
            session_title=message.run.session.title, role=message.role, content=message.content, score=float(score),
            created_at=message.created_at, url=branch_url(message.run_id, message.pk),
        )

    def as_dict(self) -> dict:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def branch_url(run_id, message_id=None) -> str:
    """The page showing the branch through ``run_id`` (the path from the root), anchored at the message."""
    url = reverse("memory:branch", kwargs={"run_id": run_id})
    return f"{url}#m-{message_id}" if message_id else url


def user_messages(user):
    """The searchable messages of ``user`` (a QuerySet of Message): user and assistant text of
    finished runs in their live sessions (runs pruned from a tree left out)."""
    return (Message.objects.filter(run__session__owner=user, run__session__deleted_at__isnull=True,
                                   run__pruned_by__isnull=True,
                                   run__status__in=FINISHED_STATUSES, role__in=SEARCHABLE_ROLES)
            .exclude(content=""))


@dataclass(frozen=True)
class SearchFilters:
    """Which messages a search may return: of one session (``session_id``: that session's own
    runs), one ``role`` (user or assistant; "" both), written between ``since`` and ``until``
    (days, both included, in the current time zone)."""

    session_id: uuid.UUID | None = None
    role: str = ""
    since: date | None = None
    until: date | None = None

    @property
    def active(self) -> bool:
        return bool(self.session_id or self.role or self.since or self.until)

    def apply(self, messages):
        """``messages`` (a QuerySet of Message) narrowed to these filters."""
        if self.session_id:
            messages = messages.filter(run__session_id=self.session_id)
        if self.role:
            messages = messages.filter(role=self.role)
        return within_days(messages, self.since, self.until)


@dataclass(frozen=True)
class Search:
    """One search: ``query`` (stripped; "" asks nothing), ``mode`` (semantic or keyword), ``top_k``
    (1–100) and ``filters``."""

    query: str
    mode: str = "semantic"
    top_k: int = 10
    filters: SearchFilters = field(default_factory=SearchFilters)


def parse_search(*, query, mode="semantic", top_k=10, session_id=None, role=None, since=None, until=None) -> Search:
    """A :class:`Search` from the page's query string or the API's parameters (strings or typed
    values). Raises InvalidInput with one sentence per bad part: an unknown mode, a top_k that is
    not a whole number from 1 to 100, a query over 1000 characters or with a control character, a
    malformed session id, an unknown role, a date that is not YYYY-MM-DD."""
    errors = []
    mode = mode or "semantic"
    if mode not in MODES:
        errors.append(f"Unknown search mode {mode!r}: choose semantic or keyword.")
    try:
        top_k = int(top_k)
    except (TypeError, ValueError):
        top_k = 0
    if not 1 <= top_k <= MAX_TOP_K:
        errors.append(f"k must be a whole number from 1 to {MAX_TOP_K}.")
    parsed: dict = {}
    checks = {
        "query": lambda: clean_text(query or "", field="query", max_length=MAX_QUERY_CHARS, required=False,
                                    multiline=True),
        "session_id": lambda: uuid.UUID(str(session_id)) if session_id not in (None, "") else None,
        "role": lambda: _role(role),
        "since": lambda: parse_day(since, field="since"),
        "until": lambda: parse_day(until, field="until"),
    }
    for name, check in checks.items():
        try:
            parsed[name] = check()
        except InvalidInput as exc:
            errors.append(exc.message)
        except ValueError:
            errors.append(f"{name} is not a valid id")
    if errors:
        raise InvalidInput(" ".join(errors))
    filters = SearchFilters(session_id=parsed["session_id"], role=parsed["role"], since=parsed["since"],
                            until=parsed["until"])
    return Search(query=parsed["query"], mode=mode, top_k=top_k, filters=filters)


def _role(role) -> str:
    role = role or ""
    if role and role not in SEARCHABLE_ROLES:
        raise InvalidInput(f"role must be {' or '.join(SEARCHABLE_ROLES)}")
    return role


def find(user, search: Search, *, embedder=None) -> list[SearchHit]:
    """The hits of ``search`` among ``user``'s messages ([] for an empty query): semantic or keyword.
    Raises SemanticSearchUnavailable (its message says why) when that mode cannot run."""
    if not search.query:
        return []
    if search.mode == "keyword":
        return keyword_search(user=user, query=search.query, top_k=search.top_k, filters=search.filters)
    return search_messages(user=user, query=search.query, top_k=search.top_k, embedder=embedder,
                           filters=search.filters)


def backfill(user, *, embedder, limit: int | None = None) -> int:
    """Embed up to ``limit`` (default ``ARBOR_EMBED_BACKFILL``) of ``user``'s messages not indexed
    yet, newest first; returns how many."""
    limit = limit if limit is not None else settings.ARBOR_EMBED_BACKFILL
    missing = (user_messages(user).exclude(embeddings__model=embedder.name)
               .select_related("run__session").order_by("-id")[:limit])
    done = 0
    batch: list = []
    for message in missing.iterator(chunk_size=256):
        batch.append(message)
        if len(batch) >= 256:
            done += semantic.index_messages(batch, embedder=embedder, owner_id=user.pk)
            batch = []
    return done + semantic.index_messages(batch, embedder=embedder, owner_id=user.pk)


def search_messages(*, user, query: str, top_k: int = 5, embedder=None,
                    filters: SearchFilters | None = None) -> list[SearchHit]:
    """The ``top_k`` messages of ``user``'s sessions most similar in meaning to ``query``, best
    first, each with a link to its branch; only those ``filters`` allow. Indexes the user's new
    messages first (up to ``ARBOR_EMBED_BACKFILL`` per call). Deleted sessions and other users'
    messages never appear.

    Raises ValueError for an empty query or a top_k outside 1–100, SemanticSearchUnavailable when
    no embedder can run (its message says why)."""
    query = (query or "").strip()
    if not query:
        raise ValueError("query is empty")
    if not isinstance(top_k, int) or not 1 <= top_k <= 100:
        raise ValueError("top_k must be between 1 and 100")
    embedder = embedder or semantic.get_embedder()
    backfill(user, embedder=embedder)
    ids, vectors = semantic.user_matrix(user.pk, embedder.name)
    if not len(ids):
        return []
    scores = vectors @ embedder.embed([query])[0]
    allowed = user_messages(user)
    if filters is not None and filters.active:
        allowed = filters.apply(allowed)
        keep = np.isin(ids, np.fromiter(allowed.values_list("id", flat=True), dtype=np.int64))
        ids, scores = ids[keep], scores[keep]
    # over-fetch: some rows may belong to sessions deleted since they were indexed
    best = semantic.top_indexes(scores, top_k * 3 + 10)
    wanted = [int(ids[i]) for i in best]
    found = {m.pk: m for m in allowed.filter(pk__in=wanted).select_related("run__session")}
    hits: list[SearchHit] = []
    for i in best:
        message = found.get(int(ids[i]))
        if message is None:
            continue
        hits.append(SearchHit.of(message, scores[i]))
        if len(hits) == top_k:
            break
    return hits


def keyword_search(*, user, query: str, top_k: int, filters: SearchFilters | None = None) -> list[SearchHit]:
    """The ``top_k`` newest messages of ``user`` containing the words of ``query`` (only those
    ``filters`` allow): PostgreSQL full-text search ranked by ``ts_rank``, else a case-insensitive
    ``LIKE`` (SQLite).

    Raises SemanticSearchUnavailable (with KEYWORD_UNAVAILABLE) while encryption is on."""
    if encryption_enabled():
        raise SemanticSearchUnavailable(KEYWORD_UNAVAILABLE)
    qs = (filters or SearchFilters()).apply(user_messages(user)).select_related("run__session")
    if connection.vendor == "postgresql":
        qs = qs.matching(query, ranked=True).order_by("-rank", "-id")  # the GIN index finds the matches
    else:
        for word in query.split():
            qs = qs.filter(content__icontains=word)
        qs = qs.order_by("-id")
    return [SearchHit.of(m, getattr(m, "rank", 1.0)) for m in qs[:top_k]]


def branch_messages(run) -> list[Message]:
    """Every message of the branch from the root to ``run``, in order (one query)."""
    return list(Message.objects.on_path_to(run))
