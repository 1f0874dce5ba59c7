"""The JSON API of memory search (a django-ninja router, mounted by :mod:`config.api`): find past
messages across the caller's sessions, by meaning (``semantic``) or by words (``keyword``), with
filters, each hit linking to the branch it stands on; and read that branch.

The parameters are read by :func:`search.selectors.parse_search` and the search is
:func:`search.selectors.find`, exactly as the search page (:mod:`search.views`)
does. Other users' messages never appear; another user's session or run is 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from django.urls import reverse
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from conversations.selectors import get_run_for, get_session_for
from core.api_kit import answers
from core.dates import DAY_SCHEMA
from core.errors import InvalidInput

from . import selectors as search

router = Router(tags=["memory search"])


class HitOut(Schema):
    message_id: int
    run_id: uuid.UUID
    session_id: uuid.UUID
    session_title: str
    role: str
    content: str
    score: float = Field(description="semantic: cosine similarity; keyword: PostgreSQL ts_rank.")
    created_at: datetime
    url: str = Field(description="The page showing the branch through this run, anchored at the message.")
    branch: str = Field(description="The same branch as JSON: GET /api/branches/{run_id}.")


class SearchFiltersOut(Schema):
    session_id: uuid.UUID | None
    role: str | None
    since: str | None
    until: str | None


class SearchOut(Schema):
    query: str
    mode: str
    top_k: int
    filters: SearchFiltersOut
    hits: list[HitOut] = Field(description="Best first, at most top_k.")


class BranchMessage(Schema):
    message_id: int
    run_id: uuid.UUID
    position: int
    role: str
    content: str
    name: str
    created_at: datetime


class BranchOut(Schema):
    run_id: uuid.UUID
    session_id: uuid.UUID
    session_title: str
    url: str
    messages: list[BranchMessage] = Field(description="From the root to the run, in order.")


SEARCH_DOC = (
    "Semantic search embeds the query (ARBOR_EMBEDDINGS: the local model or the endpoint's embeddings API) and "
    "ranks your messages by cosine similarity; keyword search is PostgreSQL full-text search (unavailable while "
    "encryption at rest is on). 503 when the chosen mode cannot run, saying why."
)


class SearchIn(Schema):
    q: str = Field(min_length=1, max_length=search.MAX_QUERY_CHARS, description="What to look for.")
    mode: Literal[search.MODES] = "semantic"
    top_k: int = Field(10, ge=1, le=search.MAX_TOP_K)
    session_id: uuid.UUID | None = Field(None, description="Only messages of this session's own runs.")
    role: Literal[search.SEARCHABLE_ROLES] | None = None
    since: str = Field(None, **DAY_SCHEMA,
                              description="YYYY-MM-DD: messages written on or after this day.")
    until: str = Field(None, **DAY_SCHEMA,
                              description="YYYY-MM-DD: messages written on or before this day.")


@router.get("/search", response=answers({200: SearchOut}, 400, 404), description=SEARCH_DOC)
def search_messages(request, params: Query[SearchIn]):
    """The ``top_k`` messages of your sessions that best match ``q``, each with links to its branch."""
    if params.session_id is not None:
        get_session_for(request.auth, params.session_id)  # another user's session is 404, not an empty result
    wanted = search.parse_search(query=params.q, mode=params.mode, top_k=params.top_k, session_id=params.session_id,
                                 role=params.role, since=params.since, until=params.until)
    if not wanted.query:
        raise InvalidInput("q is empty")
    try:
        hits = search.find(request.auth, wanted)
    except search.SemanticSearchUnavailable as exc:
        raise HttpError(503, str(exc)) from exc
    f = wanted.filters
    return {
        "query": wanted.query, "mode": wanted.mode, "top_k": wanted.top_k,
        "filters": {"session_id": f.session_id, "role": f.role or None, "since": f.since and f.since.isoformat(),
                    "until": f.until and f.until.isoformat()},
        "hits": [{**hit.as_dict(), "url": request.build_absolute_uri(hit.url),
                  "branch": request.build_absolute_uri(reverse("api:branch", kwargs={"run_id": hit.run_id}))}
                 for hit in hits],
    }


@router.get("/branches/{run_id}", response=answers({200: BranchOut}, 404), url_name="branch")
def get_branch(request, run_id: str):
    """Every message from the root to ``run_id`` (what a search hit stands on). To continue the
    conversation from there: ``POST /api/sessions/{session_id}/active`` with this ``run_id``, then
    ``POST /api/sessions/{session_id}/runs``."""
    run = get_run_for(request.auth, run_id)
    return {
        "run_id": run.pk, "session_id": run.session_id, "session_title": run.session.title,
        "url": request.build_absolute_uri(search.branch_url(run.pk)),
        "messages": [{"message_id": m.pk, "run_id": m.run_id, "position": m.position, "role": m.role,
                      "content": m.content, "name": m.name or "", "created_at": m.created_at}
                     for m in search.branch_messages(run)],
    }
