"""Pages of memory search: find past messages across the user's sessions, and read the branch a
message stands on (with a button to continue the session from there). Mounted at ``memory/``
under the URL namespace ``memory`` (:mod:`search.urls`).

Search modes: ``semantic`` (meaning, :func:`search.selectors.search_messages`) and ``keyword``
(words, in the database: :func:`search.selectors.keyword_search`); the page and the JSON API
(:mod:`search.api`) read their parameters with the same
:func:`search.selectors.parse_search`. Keyword search cannot run
while encryption at rest is on — the database only holds ciphertext — and semantic search may be
off or missing its model; either way the page says so in words instead of failing.
"""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.selectors import get_run_for
from core.errors import InvalidInput
from core.fields import encryption_enabled

from . import selectors as search


@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    """``?q=words&mode=semantic|keyword&k=10`` and the filters ``session``, ``role``, ``since``,
    ``until`` (:func:`search.selectors.parse_search`, as the API reads them): results with
    links to their branches (400 with a notice for a bad parameter)."""
    get = request.GET
    context = {"query": (get.get("q") or "").strip(), "mode": get.get("mode") or "semantic", "modes": search.MODES,
               "hits": [], "notice": "", "encrypted": encryption_enabled(), "roles": search.SEARCHABLE_ROLES,
               "filters": {name: get.get(name) or "" for name in ("session", "role", "since", "until")}}
    status = 200
    try:
        wanted = search.parse_search(query=get.get("q"), mode=context["mode"], top_k=get.get("k") or 10,
                                     session_id=get.get("session"), role=get.get("role"), since=get.get("since"),
                                     until=get.get("until"))
    except InvalidInput as exc:
        context["notice"], status = exc.message, 400
    else:
        try:
            context["hits"] = search.find(request.user, wanted)
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
    messages = search.branch_messages(run)
    return render(request, "memory/branch.html", {"run": run, "session": run.session, "messages": messages})
