"""Pages of memory search: find past messages across the user's sessions, and read the branch a
message stands on (with a button to continue the session from there).

Search modes: ``semantic`` (meaning, :func:`memory.semantic.search_messages`) and ``keyword``
(words, in the database: PostgreSQL full-text search, ``LIKE`` on SQLite). Keyword search cannot
run while encryption at rest is on — the database only holds ciphertext — and semantic search may
be off or missing its model; either way the page says so in words instead of failing.
"""

from __future__ import annotations

from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.selectors import get_run_for
from core.errors import NotFound
from conversations.models import Message

from . import semantic
from core.fields import encryption_enabled

MODES = ("semantic", "keyword")
KEYWORD_UNAVAILABLE = (
    "Keyword search is unavailable while encryption at rest is on: the database holds only encrypted "
    "text (ARBOR_MEMORY_ENCRYPTION_KEYS is set). Semantic search still works."
)


def keyword_search(*, user, query: str, top_k: int) -> list[semantic.SearchHit]:
    """The ``top_k`` newest messages of ``user`` containing the words of ``query``: PostgreSQL
    full-text search ranked by ``ts_rank``, else a case-insensitive ``LIKE`` (SQLite).

    Raises semantic.SemanticSearchUnavailable (with KEYWORD_UNAVAILABLE) while encryption is on."""
    if encryption_enabled():
        raise semantic.SemanticSearchUnavailable(KEYWORD_UNAVAILABLE)
    qs = semantic.user_messages(user).select_related("run__session")
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        search = SearchQuery(query, config="english", search_type="websearch")
        qs = (qs.annotate(score=SearchRank(SearchVector("content", config="english"), search))
              .filter(score__gt=0).order_by("-score", "-id"))
    else:
        for word in query.split():
            qs = qs.filter(content__icontains=word)
        qs = qs.order_by("-id")
    return [
        semantic.SearchHit(
            message_id=m.pk, run_id=str(m.run_id), session_id=str(m.run.session_id), session_title=m.run.session.title,
            role=m.role, content=m.content, score=float(getattr(m, "score", 1.0)), created_at=m.created_at,
            url=semantic.branch_url(m.run_id, m.pk),
        )
        for m in qs[:top_k]
    ]


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """``?q=words&mode=semantic|keyword&k=10``: results with links to their branches."""
    query = (request.GET.get("q") or "").strip()
    mode = request.GET.get("mode") or "semantic"
    context = {"query": query, "mode": mode, "modes": MODES, "hits": [], "notice": "",
               "encrypted": encryption_enabled()}
    status = 200
    try:
        top_k = int(request.GET.get("k") or 10)
    except ValueError:
        top_k = 0
    if mode not in MODES:
        context["notice"], status = f"Unknown search mode {mode!r}: choose semantic or keyword.", 400
    elif not 1 <= top_k <= 100:
        context["notice"], status = "k must be a whole number from 1 to 100.", 400
    elif len(query) > 1000:
        context["notice"], status = "The query is longer than 1000 characters.", 400
    elif query:
        try:
            if mode == "semantic":
                context["hits"] = semantic.search_messages(user=request.user, query=query, top_k=top_k)
            else:
                context["hits"] = keyword_search(user=request.user, query=query, top_k=top_k)
        except semantic.SemanticSearchUnavailable as exc:
            context["notice"] = str(exc)
    template = "memory/search.html#results" if request.htmx and not request.htmx.boosted else "memory/search.html"
    return render(request, template, context, status=status)


@require_GET
def branch(request: HttpRequest, run_id) -> HttpResponse:
    """The branch through ``run_id``: every message from the root to that run, read-only, each
    with an anchor ``#m-<id>``; "Continue from here" makes it the session's active branch."""
    try:
        run = get_run_for(request.user, run_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    messages = list(Message.objects.on_path_to(run))
    return render(request, "memory/branch.html", {"run": run, "session": run.session, "messages": messages})
