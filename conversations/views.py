"""HTML pages: function views, HTMX partials (``template#partial``), real hrefs everywhere.

Every view checks ownership itself (404 for other users' sessions), never only in a template.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import services
from .api import get_run_for, get_session_for
from .errors import ArborError, NotFound
from .models import ACTIVE_STATUSES, Message, Run, Session
from .sse import sse_response


def _session_or_404(request, session_id) -> Session:
    try:
        return get_session_for(request.user, session_id)
    except NotFound as exc:
        raise Http404(exc.message) from None


def _run_or_404(request, run_id) -> Run:
    try:
        return get_run_for(request.user, run_id)
    except NotFound as exc:
        raise Http404(exc.message) from None


def branch_turns(session: Session) -> list[dict]:
    """The active branch as turns ``{"run", "messages", "siblings"}``, root first (one path query)."""
    if session.active_run_id is None:
        return []
    turns: dict = {}
    for message in Message.objects.on_path_to(session.active_run_id):
        turn = turns.setdefault(message.run_id, {"run": message.run, "messages": []})
        turn["messages"].append(message)
    return list(turns.values())


@require_GET
def session_list(request: HttpRequest) -> HttpResponse:
    sessions = Session.objects.alive().owned_by(request.user).order_by("-updated_at")[:100]
    return render(request, "conversations/session_list.html", {"sessions": sessions})


@require_POST
def session_new(request: HttpRequest) -> HttpResponse:
    session = services.session_create(owner=request.user, title=request.POST.get("title", ""))
    return redirect("conversations:session_detail", session_id=session.pk)


@require_GET
def session_detail(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(request, session_id)
    context = {"session": session, "turns": branch_turns(session), "active_statuses": ACTIVE_STATUSES}
    if request.htmx and not request.htmx.boosted:
        return render(request, "conversations/session.html#thread", context)
    return render(request, "conversations/session.html", context)


@require_POST
def run_create(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(request, session_id)
    kwargs = {}
    parent_id = request.POST.get("parent_run_id")
    if parent_id:
        kwargs["parent"] = _run_or_404(request, parent_id)
    try:
        services.run_start(session=session, input=request.POST.get("input", ""), **kwargs)
    except ArborError as exc:
        if request.htmx:
            return HttpResponse(exc.message, status=exc.status)
        flash.error(request, exc.message)
    return _thread_or_redirect(request, session)


def _thread_or_redirect(request, session: Session) -> HttpResponse:
    if request.htmx and not request.htmx.boosted:
        session.refresh_from_db()
        context = {"session": session, "turns": branch_turns(session), "active_statuses": ACTIVE_STATUSES}
        return render(request, "conversations/session.html#thread", context)
    return redirect("conversations:session_detail", session_id=session.pk)


@require_POST
def run_rewind(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Continue from here: the branch shown ends at this run; the next message branches from it."""
    session = _session_or_404(request, session_id)
    run = _run_or_404(request, run_id)
    if not session.can_branch_from(run):
        raise Http404("That run is not part of this session.")
    Session.objects.filter(pk=session.pk).update(active_run=run)
    return _thread_or_redirect(request, session)


@require_POST
def run_fork(request: HttpRequest, session_id, run_id) -> HttpResponse:
    _session_or_404(request, session_id)
    run = _run_or_404(request, run_id)
    try:
        fork = services.session_fork(run=run, owner=request.user)
    except ArborError as exc:
        flash.error(request, exc.message)
        return redirect("conversations:session_detail", session_id=session_id)
    url = reverse("conversations:session_detail", kwargs={"session_id": fork.pk})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@require_POST
def run_cancel(request: HttpRequest, session_id, run_id) -> HttpResponse:
    session = _session_or_404(request, session_id)
    run = _run_or_404(request, run_id)
    try:
        services.run_cancel(run=run)
    except ArborError as exc:
        flash.info(request, exc.message)
    return _thread_or_redirect(request, session)


@require_GET
def run_stream(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """HTML-flavoured SSE of a run for the htmx SSE extension."""
    _session_or_404(request, session_id)
    run = _run_or_404(request, run_id)
    return sse_response(run.pk, request.headers.get("Last-Event-ID"), html=True)


@require_GET
def run_turn(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """One turn of the thread (the partial the page swaps in when a streamed reply is done)."""
    session = _session_or_404(request, session_id)
    run = _run_or_404(request, run_id)
    turn = {"run": run, "messages": list(run.messages.order_by("position"))}
    return render(request, "conversations/session.html#turn",
                  {"session": session, "turn": turn, "active_statuses": ACTIVE_STATUSES})
