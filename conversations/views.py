"""HTML pages: function views, HTMX partials (``template#partial``), real hrefs everywhere.

Every view checks ownership itself (404 for other users' sessions and runs), never only in a
template: lookups go through :mod:`conversations.selectors`, whose NotFound the site's
``core.middleware.NotFoundMiddleware`` answers with the 404 page. Ids in paths are ``<uuid:…>``
(a malformed id is a 404 before any view runs). Reads go through :mod:`conversations.browse`
(constant query counts at any depth); writes through :mod:`conversations.services`.

Pages: the sessions list (search, rename, delete with undo), the chat (the active branch, newest
turns first, older ones loaded on scroll), the tree view (lazy subtrees). Actions on a turn: edit,
regenerate/retry, continue from here (rewind), fork, open a sibling (``< 2/3 >``), stop.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.ratelimit import limit_run_creation
from connections.selectors import find_model, pickable_models
from core.errors import ArborError, InvalidInput
from core.fields import encryption_enabled
from memory.models import Agent

from . import browse, services
from .models import ACTIVE_STATUSES, Run, Session
from .selectors import get_branch_run_for, get_session_for, undo_cutoff
from .sse import sse_response

CHAT_WINDOW = 30  # turns rendered at first (newest); older ones load on scroll, as many at a time
MAX_WINDOW = 200  # at most this many turns when a page must reach back to a given turn
TREE_BUDGET = 300  # runs shown by the tree view before subtrees become "show more" links
SESSIONS_PER_PAGE = 50


def _branch_run(request, session: Session, run_id) -> Run:
    """A run of ``session``'s tree owned by the user (:func:`selectors.get_branch_run_for`)."""
    return get_branch_run_for(request.user, session, run_id)


def _is_partial(request) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def _error(request, exc: ArborError, session: Session | None = None) -> HttpResponse:
    """A refused action: the message as the response body for htmx (app.js shows it), else a flash."""
    if request.htmx:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
    flash.error(request, exc.message)
    if session is None:
        return redirect("conversations:session_list")
    return redirect("conversations:session_detail", session_id=session.pk)


def _agents_for(user):
    return Agent.objects.pickable_by(user)


# --- sessions -------------------------------------------------------------------------------------

@require_GET
def session_list(request: HttpRequest) -> HttpResponse:
    """Sessions, newest activity first, with run and branch counts; ``?q=`` searches titles and
    messages; recently deleted sessions can be restored for ARBOR_UNDO_DELETE_SECONDS."""
    query = request.GET.get("q", "").strip()
    sessions = browse.search_sessions(Session.objects.alive().owned_by(request.user), query)
    sessions = browse.with_counts(sessions).order_by("-updated_at", "pk")
    page = Paginator(sessions, SESSIONS_PER_PAGE).get_page(request.GET.get("page"))
    deleted = Session.objects.owned_by(request.user).filter(deleted_at__gte=undo_cutoff()).order_by("-deleted_at")[:10]
    search_note = ("Message text is encrypted at rest, so search looks at titles only (semantic search under "
                   "“Search memory” still reads messages).") if query and encryption_enabled() else ""
    context = {"page": page, "query": query, "deleted": deleted, "search_note": search_note}
    if _is_partial(request) and request.htmx.target == "results":
        return render(request, "conversations/session_list.html#results", context)
    return render(request, "conversations/session_list.html", context)


@require_POST
def session_new(request: HttpRequest) -> HttpResponse:
    try:
        session = services.session_create(owner=request.user, title=request.POST.get("title", ""))
    except ArborError as exc:
        return _error(request, exc)
    return redirect("conversations:session_detail", session_id=session.pk)


def _row(request, session: Session) -> HttpResponse:
    session = browse.with_counts(Session.objects.filter(pk=session.pk)).get()
    return render(request, "conversations/session_list.html#row", {"s": session})


@require_POST
def session_rename(request: HttpRequest, session_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    try:
        services.session_rename(session=session, title=request.POST.get("title", ""))
    except ArborError as exc:
        return _error(request, exc)
    if _is_partial(request):
        return _row(request, session)
    if request.POST.get("next") == "chat":
        return redirect("conversations:session_detail", session_id=session.pk)
    return redirect("conversations:session_list")


@require_POST
def session_delete(request: HttpRequest, session_id) -> HttpResponse:
    """Soft-delete; the owner can undo it for ARBOR_UNDO_DELETE_SECONDS (then it stays hidden)."""
    session = get_session_for(request.user, session_id)
    services.session_delete(session=session)
    if _is_partial(request):
        return render(request, "conversations/session_list.html#deleted_row", {"s": session})
    flash.info(request, f"Deleted “{session}”. You can undo this below for a while.")
    return redirect("conversations:session_list")


@require_POST
def session_restore(request: HttpRequest, session_id) -> HttpResponse:
    session = Session.objects.owned_by(request.user).filter(pk=session_id, deleted_at__gte=undo_cutoff()).first()
    if session is None:
        raise Http404("Nothing to restore: no such session, or its undo time has passed.")
    services.session_restore(session=session)
    if _is_partial(request):
        return _row(request, session)
    return redirect("conversations:session_list")


# --- the chat -------------------------------------------------------------------------------------

def _chat_context(request, session: Session, *, reach_depth: int | None = None) -> dict:
    """The chat page's context: the newest CHAT_WINDOW turns of the active branch (reaching back to
    ``reach_depth`` when given, at most MAX_WINDOW turns), branch totals, the agent picker."""
    limit = CHAT_WINDOW
    turns = []
    if session.active_run_id is not None:
        if reach_depth is not None:
            leaf_depth = Run.objects.filter(pk=session.active_run_id).values_list("depth", flat=True).first() or 0
            limit = max(CHAT_WINDOW, min(MAX_WINDOW, leaf_depth - reach_depth + 3))
        turns = browse.branch_window(session, session.active_run_id, limit)
        browse.attach_compactions(turns)
    agents = list(_agents_for(request.user))
    models = list(pickable_models(request.user))
    last_agent = turns[-1].run.agent_id if turns else session.default_agent_id
    last_model = None
    if turns and turns[-1].run.agent_id is None and turns[-1].run.connection_id is not None:  # a model was picked
        picked = find_model(models, turns[-1].run.connection_id, turns[-1].run.model)
        last_model = picked.pk if picked is not None else None
    source = None
    if session.forked_from_run_id:
        source = Run.objects.select_related("session").filter(pk=session.forked_from_run_id).first()
    return {
        "session": session,
        "turns": turns,
        "has_older": bool(turns) and turns[0].run.parent_run_id is not None,
        "totals": browse.branch_totals(session.active_run_id),
        "last_run": turns[-1].run if turns else None,
        "agents": agents,
        "models": models,
        "selected_agent_id": last_agent,
        "selected_model_id": last_model,
        "source_run": source,
        "source_alive": bool(source and source.session.deleted_at is None),
        "active_statuses": ACTIVE_STATUSES,
        "any_active": any(t.run.status in ACTIVE_STATUSES for t in turns[-1:]),
    }


@require_GET
def session_detail(request: HttpRequest, session_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    reach = None
    at = request.GET.get("at")
    if at:
        try:
            reach = Run.objects.filter(pk=browse.as_uuid(at)).values_list("depth", flat=True).first()
        except ValueError:
            reach = None
    context = _chat_context(request, session, reach_depth=reach)
    if _is_partial(request):
        return render(request, "conversations/session.html#thread", context)
    return render(request, "conversations/session.html", context)


@require_GET
def session_older(request: HttpRequest, session_id) -> HttpResponse:
    """Turns above ``?before=<run_id>`` on the active branch (CHAT_WINDOW of them): a partial that
    replaces the "older turns" loader for htmx, a page of its own without JavaScript."""
    session = get_session_for(request.user, session_id)
    before = _branch_run(request, session, request.GET.get("before", ""))
    turns = browse.branch_window(session, before.pk, CHAT_WINDOW, skip_start=True)
    browse.attach_compactions(turns)
    context = {
        "session": session, "turns": turns, "active_statuses": ACTIVE_STATUSES,
        "has_older": bool(turns) and turns[0].run.parent_run_id is not None, "before": before,
    }
    if _is_partial(request):
        return render(request, "conversations/session.html#older_turns", context)
    return render(request, "conversations/older.html", context)


def _thread_or_redirect(request, session: Session, anchor_run_id=None) -> HttpResponse:
    if _is_partial(request):
        session.refresh_from_db()  # the first message names an untitled session: refresh the heading too
        context = {**_chat_context(request, session), "oob_title": True}
        return render(request, "conversations/session.html#thread", context)
    url = reverse("conversations:session_detail", kwargs={"session_id": session.pk})
    if anchor_run_id is not None:
        url += f"?at={anchor_run_id}#turn-{anchor_run_id}"
    return redirect(url)


@require_POST
def branch_open(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Open the branch through a run (a sibling arrow or a tree node): the newest run below it
    becomes the session's active run, so the choice survives reloads and other devices. A POST
    (a form; htmx sends the CSRF header): a GET, such as an image in an answer, changes nothing."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    leaf = browse.newest_leaf_below(session, run)
    services.session_set_active(session=session, run=leaf)
    if _is_partial(request):
        return render(request, "conversations/session.html#thread",
                      _chat_context(request, session, reach_depth=run.depth))
    return redirect(reverse("conversations:session_detail", kwargs={"session_id": session.pk})
                    + f"?at={run.pk}#turn-{run.pk}")


def _answerer_from(request) -> dict:
    """What the composer's picker chose, as ``run_start`` arguments: an agent (its id), a model of
    a connection (``model:<id>``: that connection and model), or nothing (the default)."""
    choice = (request.POST.get("agent_id") or "").strip()
    if not choice:
        return {}
    if choice.startswith("model:"):
        model_id = choice.removeprefix("model:")
        model = pickable_models(request.user).filter(pk=int(model_id)).first() if model_id.isdigit() else None
        if model is None:
            raise InvalidInput("Pick one of your connections' models (or an agent, or the default).")
        return {"connection": model.connection, "model": model.name}
    try:
        agent = _agents_for(request.user).filter(pk=int(choice)).first()
    except ValueError:
        agent = None
    if agent is None:
        raise InvalidInput("Pick one of your agents (or the default).")
    return {"agent": agent}


@require_POST
@limit_run_creation
def run_create(request: HttpRequest, session_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    kwargs = {}
    parent_id = request.POST.get("parent_run_id")
    if parent_id:
        kwargs["parent"] = _branch_run(request, session, parent_id)
    try:
        services.run_start(session=session, input=request.POST.get("input", ""), **_answerer_from(request), **kwargs)
    except ArborError as exc:
        return _error(request, exc, session)
    return _thread_or_redirect(request, session)


@require_POST
@limit_run_creation
def run_edit(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Edit a user message: a sibling run with the new input, shown at once."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    try:
        new = services.run_edit(run=run, input=request.POST.get("input", ""), session=session)
    except ArborError as exc:
        return _error(request, exc, session)
    return _thread_or_redirect(request, session, new.pk)


@require_POST
@limit_run_creation
def run_regenerate(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Regenerate an answer (or retry a failed run): a sibling with the same input."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    try:
        new = services.run_regenerate(run=run, session=session)
    except ArborError as exc:
        return _error(request, exc, session)
    return _thread_or_redirect(request, session, new.pk)


@require_POST
def run_rewind(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Continue from here: the branch shown ends at this run; the next message branches from it."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    services.session_rewind(session=session, run=run)
    return _thread_or_redirect(request, session, run.pk)


@require_POST
def run_fork(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Fork to a new session that continues from this run (its earlier turns are shared)."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    try:
        fork = services.session_fork(run=run, owner=request.user)
    except ArborError as exc:
        return _error(request, exc, session)
    url = reverse("conversations:session_detail", kwargs={"session_id": fork.pk})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@require_POST
def run_cancel(request: HttpRequest, session_id, run_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    try:
        services.run_cancel(run=run)
    except ArborError as exc:
        if not _is_partial(request):
            flash.info(request, exc.message)
    if _is_partial(request):
        # The streaming element stays: the run's "done" event swaps in the stopped turn with the
        # partial text the worker kept.
        return HttpResponse(status=204)
    return _thread_or_redirect(request, session)


@require_GET
def run_stream(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """HTML-flavoured SSE of a run for the htmx SSE extension."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    return sse_response(run.pk, request.headers.get("Last-Event-ID"), html=True)


@require_GET
def run_turn(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """One turn of the thread (the partial the page swaps in when a streamed reply is done)."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    turn = browse.Turn(run=run, messages=list(run.messages.order_by("position")), shared=run.session_id != session.pk)
    browse.attach_siblings(session, [turn])
    browse.attach_compactions([turn])
    context = {"session": session, "turn": turn, "active_statuses": ACTIVE_STATUSES}
    if run.pk == session.active_run_id:  # the branch's facts changed too: swap them out of band
        context.update(oob=True, totals=browse.branch_totals(run.pk), last_run=run)
    return render(request, "conversations/session.html#turn_done", context)


# --- the tree view --------------------------------------------------------------------------------

@require_GET
def session_tree(request: HttpRequest, session_id) -> HttpResponse:
    """The session as a tree. ``?root=<run_id>``: only the subtree below that run (how a "show
    more" link loads); ``?chain=<run_id>&n=<count>``: an elided straight stretch of runs."""
    session = get_session_for(request.user, session_id)
    skeleton = browse.tree_skeleton(session)
    root_id, chain_id = request.GET.get("root"), request.GET.get("chain")
    mode = "tree"
    try:
        if chain_id:
            start = skeleton.get(chain_id)
            if start is None:
                raise Http404("No such run in this session.")
            count = max(1, min(int(request.GET.get("n", "1")), 100_000))
            items, mode = browse.chain_items(start, count), "chain"
        elif root_id:
            start = skeleton.get(root_id)
            if start is None:
                raise Http404("No such run in this session.")
            items, mode = browse.plan_tree([start], budget=TREE_BUDGET), "subtree"
        else:
            items = browse.plan_tree(skeleton.roots, budget=TREE_BUDGET)
    except ValueError:
        raise Http404("No such run in this session.") from None
    browse.attach_previews(items)
    source = None
    if session.forked_from_run_id:
        source = Run.objects.select_related("session").filter(pk=session.forked_from_run_id).first()
    context = {
        "session": session, "items": items, "mode": mode, "run_count": len(skeleton.nodes),
        "source_run": source, "source_alive": bool(source and source.session.deleted_at is None),
    }
    if _is_partial(request) and mode != "tree":
        return render(request, "conversations/tree.html#items", context)
    return render(request, "conversations/tree.html", context)
