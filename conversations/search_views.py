"""Pages of memory search: find past messages across the user's sessions, and read the branch a
message stands on (with a button to continue the session from there). Mounted at ``memory/``
under the URL namespace ``memory`` (:mod:`conversations.search_urls`).

Search modes: ``semantic`` (meaning, :func:`conversations.search.search_messages`) and ``keyword``
(words, in the database: :func:`conversations.search.keyword_search`). Keyword search cannot run
while encryption at rest is on — the database only holds ciphertext — and semantic search may be
off or missing its model; either way the page says so in words instead of failing.
"""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.fields import encryption_enabled

from . import search
from .models import Message
from .selectors import get_run_for

MODES = ("semantic", "keyword")


def _search_notice(mode: str, top_k: int, query: str) -> str:
    """Why the request cannot be answered ("" when it can)."""
    if mode not in MODES:
        return f"Unknown search mode {mode!r}: choose semantic or keyword."
    if not 1 <= top_k <= 100:
        return "k must be a whole number from 1 to 100."
    if len(query) > 1000:
        return "The query is longer than 1000 characters."
    return ""


@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    """``?q=words&mode=semantic|keyword&k=10``: results with links to their branches (400 with a
    notice for a bad mode, k or query)."""
    query = (request.GET.get("q") or "").strip()
    mode = request.GET.get("mode") or "semantic"
    context = {"query": query, "mode": mode, "modes": MODES, "hits": [], "notice": "",
               "encrypted": encryption_enabled()}
    try:
        top_k = int(request.GET.get("k") or 10)
    except ValueError:
        top_k = 0
    context["notice"] = _search_notice(mode, top_k, query)
    status = 400 if context["notice"] else 200
    if query and status == 200:
        find = search.search_messages if mode == "semantic" else search.keyword_search
        try:
            context["hits"] = find(user=request.user, query=query, top_k=top_k)
        except search.SemanticSearchUnavailable as exc:
            context["notice"] = str(exc)
    template = "memory/search.html#results" if request.htmx and not request.htmx.boosted else "memory/search.html"
    return render(request, template, context, status=status)


@require_GET
def branch(request: HttpRequest, run_id: UUID) -> HttpResponse:
    """The branch through ``run_id``: every message from the root to that run, read-only, each
    with an anchor ``#m-<id>``; "Continue from here" makes it the session's active branch.
    Another user's run is a NotFound (the site's 404 page)."""
    run = get_run_for(request.user, run_id)
    messages = list(Message.objects.on_path_to(run))
    return render(request, "memory/branch.html", {"run": run, "session": run.session, "messages": messages})
