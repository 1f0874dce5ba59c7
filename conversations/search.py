"""Search over a user's past messages: which messages are searchable, semantic search (meaning,
through :mod:`memory.semantic`'s embedders and vector index) and keyword search (words, in the
database), each hit linking to the branch its message stands on.

:mod:`memory.semantic` knows embedders, vectors and ranking; this module knows the conversation
tables (which messages belong to whom, and which runs are finished).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.urls import reverse

from core.fields import encryption_enabled
from memory import semantic
from memory.semantic import SemanticSearchUnavailable

from .models import FINISHED_STATUSES, Message

SEARCHABLE_ROLES = ("user", "assistant")
KEYWORD_UNAVAILABLE = (
    "Keyword search is unavailable while encryption at rest is on: the database holds only encrypted "
    "text (ARBOR_MEMORY_ENCRYPTION_KEYS is set). Semantic search still works."
)

__all__ = ["SEARCHABLE_ROLES", "KEYWORD_UNAVAILABLE", "SearchHit", "SemanticSearchUnavailable", "backfill",
           "branch_url", "keyword_search", "search_messages", "user_messages"]


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


def search_messages(*, user, query: str, top_k: int = 5, embedder=None) -> list[SearchHit]:
    """The ``top_k`` messages of ``user``'s sessions most similar in meaning to ``query``, best
    first, each with a link to its branch. Indexes the user's new messages first (up to
    ``ARBOR_EMBED_BACKFILL`` per call). Deleted sessions and other users' messages never appear.

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
    # over-fetch: some rows may belong to sessions deleted since they were indexed
    best = semantic.top_indexes(scores, top_k * 3 + 10)
    wanted = [int(ids[i]) for i in best]
    found = {m.pk: m for m in user_messages(user).filter(pk__in=wanted).select_related("run__session")}
    hits: list[SearchHit] = []
    for i in best:
        message = found.get(int(ids[i]))
        if message is None:
            continue
        hits.append(SearchHit.of(message, scores[i]))
        if len(hits) == top_k:
            break
    return hits


def keyword_search(*, user, query: str, top_k: int) -> list[SearchHit]:
    """The ``top_k`` newest messages of ``user`` containing the words of ``query``: PostgreSQL
    full-text search ranked by ``ts_rank``, else a case-insensitive ``LIKE`` (SQLite).

    Raises SemanticSearchUnavailable (with KEYWORD_UNAVAILABLE) while encryption is on."""
    if encryption_enabled():
        raise SemanticSearchUnavailable(KEYWORD_UNAVAILABLE)
    qs = user_messages(user).select_related("run__session")
    if connection.vendor == "postgresql":
        # PostgreSQL only (needs psycopg): imported where it is used
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        search = SearchQuery(query, config="english", search_type="websearch")
        qs = (qs.annotate(score=SearchRank(SearchVector("content", config="english"), search))
              .filter(score__gt=0).order_by("-score", "-id"))
    else:
        for word in query.split():
            qs = qs.filter(content__icontains=word)
        qs = qs.order_by("-id")
    return [SearchHit.of(m, getattr(m, "score", 1.0)) for m in qs[:top_k]]
