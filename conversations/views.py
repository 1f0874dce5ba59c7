"""HTML pages: function views, HTMX partials (``template#partial``), real hrefs everywhere.

Every view checks ownership itself (404 for other users' sessions and runs), never only in a
template: lookups go through :mod:`conversations.selectors`, whose NotFound the site's
``core.middleware.NotFoundMiddleware`` answers with the 404 page. Ids in paths are ``<uuid:…>``
(a malformed id is a 404 before any view runs). Reads go through :mod:`conversations.selectors`
(constant query counts at any depth); writes through :mod:`conversations.services`.

Pages: the sessions list (search, rename, delete with undo), the chat (the active branch, newest
turns first, older ones loaded on scroll; the sessions sidebar beside it), the tree view (lazy
subtrees). Actions on a turn: edit, regenerate/retry, continue from here (rewind), fork, open a
sibling (``< 2/3 >``), stop.

After an htmx action the response says where focus goes and what to announce: the
``arbor:after`` event of ``HX-Trigger-After-Settle`` (``HX-Trigger`` when nothing is swapped),
``{"focus": <CSS selector>, "say": <text for the aria-live region>}``, handled by app.js.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.ratelimit import limit_run_creation
from connections.selectors import find_model, pickable_models
from core import ids
from core.errors import ArborError, InvalidInput
from core.fields import encryption_enabled
from core.text import clean_text
from streams.sse import sse_response

from . import services, treemap
from .models import ACTIVE_STATUSES, Run, RunStatus, Session
from .selectors import RUN_SOURCE, get_branch_run_for, get_session_for, pages, paths, runs, trees
from .selectors.ownership import get_restorable_session_for, recently_deleted

CHAT_WINDOW = 30  # turns rendered at first (newest); older ones load on scroll, as many at a time
MAX_WINDOW = paths.MAX_WINDOW  # at most this many turns when a page must reach back to a given turn
TREE_BUDGET = 300  # runs shown by the tree view before subtrees become "show more" links
SESSIONS_PER_PAGE = 50
SIDEBAR_SESSIONS = 40  # sessions listed in the chat's sidebar (newest first); the list page has them all


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


def _after(response: HttpResponse, *, say: str = "", focus: str = "", swapped: bool = True, **extra) -> HttpResponse:
    """Tell app.js what to do once htmx has swapped ``response`` in: move focus to ``focus`` (a CSS
    selector) and announce ``say`` in the page's aria-live region; ``extra`` rides along (e.g.
    ``renamed={"id", "title"}``). ``swapped=False`` for a response that swaps nothing (204)."""
    detail = {"say": say, "focus": focus, **extra}
    header = "HX-Trigger-After-Settle" if swapped else "HX-Trigger"
    response[header] = json.dumps({"arbor:after": detail})
    return response


def _sidebar(request, current=None, query: str = "") -> dict:
    """The sessions sidebar's context: the user's newest SIDEBAR_SESSIONS sessions (``query``
    searches them as the list page does), whether there are more, and the current session's id."""
    rows = pages.sidebar_sessions(request.user, query, SIDEBAR_SESSIONS, pinned_first=settings.ARBOR_CHAT_PINS)
    more, rows = len(rows) > SIDEBAR_SESSIONS, rows[:SIDEBAR_SESSIONS]
    today = timezone.localdate()
    for row in rows:
        row.side_group = _side_group(row, today)
    return {"side_sessions": rows, "side_more": more, "current_id": current, "query": query}


def _side_group(session: Session, today) -> str:
    """The sidebar's group of a session: Pinned, else by its last activity (Today, Yesterday,
    Previous 7 days, Previous 30 days, the month and year) when ARBOR_CHAT_DATE_GROUPS is on."""
    if session.pinned_at is not None and settings.ARBOR_CHAT_PINS:
        return "Pinned"
    if not settings.ARBOR_CHAT_DATE_GROUPS:
        return ""
    day = timezone.localtime(session.updated_at).date()
    age = (today - day).days
    if age <= 0:
        return "Today"
    if age == 1:
        return "Yesterday"
    if age < 7:
        return "Previous 7 days"
    if age < 30:
        return "Previous 30 days"
    return day.strftime("%B %Y")


def _current_id(request):
    """The ``current`` session id a sidebar form sends (None when absent or malformed)."""
    try:
        return ids.as_uuid((request.POST.get("current") or request.GET.get("current") or "").strip() or None)
    except ValueError:
        return None


# --- sessions -------------------------------------------------------------------------------------

@require_GET
def session_list(request: HttpRequest) -> HttpResponse:
    """Sessions, newest activity first, with run and branch counts; ``?q=`` searches titles and
    messages; recently deleted sessions can be restored for ARBOR_UNDO_DELETE_SECONDS."""
    query, refused = _search_query(request)
    if _is_partial(request) and request.htmx.target == "side-results":
        return render(request, "conversations/_sessions_sidebar.html#side_results",
                      _sidebar(request, _current_id(request), query))
    page = Paginator(pages.listed_sessions(request.user, query), SESSIONS_PER_PAGE).get_page(request.GET.get("page"))
    deleted = recently_deleted(request.user)
    search_note = ("Message text is encrypted at rest, so search looks at titles only (semantic search under "
                   "“Search memory” still reads messages).") if query and encryption_enabled() else ""
    context = {"page": page, "query": query, "deleted": deleted, "search_note": refused or search_note}
    if _is_partial(request) and request.htmx.target == "results":
        return render(request, "conversations/session_list.html#results", context, status=400 if refused else 200)
    return render(request, "conversations/session_list.html", context, status=400 if refused else 200)


def _search_query(request: HttpRequest) -> tuple[str, str]:
    """``?q=`` through core.text.clean_text: ``(query, "")``, or ``("", why)`` when it is refused
    (a control character such as NUL, over 1000 characters): the page then lists without a search."""
    try:
        return clean_text(request.GET.get("q", ""), field="The search", max_length=1000, required=False), ""
    except InvalidInput as exc:
        return "", f"{exc.message}; showing every session."


@require_POST
def session_new(request: HttpRequest) -> HttpResponse:
    try:
        session = services.session_create(owner=request.user, title=request.POST.get("title", ""))
    except ArborError as exc:
        return _error(request, exc)
    return redirect("conversations:session_detail", session_id=session.pk)


def _row(request, session: Session) -> HttpResponse:
    """A session's row as the place that asked shows it: the sidebar (``place=sidebar``) or the list."""
    if request.POST.get("place") == "sidebar":
        return render(request, "conversations/_sessions_sidebar.html#srow",
                      {"s": session, "current_id": _current_id(request)})
    return render(request, "conversations/session_list.html#row", {"s": pages.listed_session(session)})


def _title_of(session: Session) -> str:
    return session.title or "Untitled session"


@require_POST
def session_rename(request: HttpRequest, session_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    try:
        services.session_rename(session=session, title=request.POST.get("title", ""))
    except ArborError as exc:
        return _error(request, exc)
    if _is_partial(request):
        renamed = {"id": str(session.pk), "title": session.title}
        if request.POST.get("place") == "head":  # the chat's own title: nothing to swap, app.js updates it
            return _after(HttpResponse(status=204), say=f"Renamed to “{session.title}”.", focus="#session-title",
                          swapped=False, renamed=renamed)
        return _after(_row(request, session), say=f"Renamed to “{session.title}”.",
                      focus=f"#srow-{session.pk} .stitle, #session-{session.pk} .title", renamed=renamed)
    if request.POST.get("next") == "chat":
        return redirect("conversations:session_detail", session_id=session.pk)
    return redirect("conversations:session_list")


@require_POST
def session_delete(request: HttpRequest, session_id) -> HttpResponse:
    """Soft-delete; the owner can undo it for ARBOR_UNDO_DELETE_SECONDS (then it stays hidden)."""
    session = get_session_for(request.user, session_id)
    services.session_delete(session=session)
    if _is_partial(request):
        seconds = settings.ARBOR_UNDO_DELETE_SECONDS
        if request.POST.get("place") == "sidebar":
            response = render(request, "conversations/_sessions_sidebar.html#sdeleted",
                              {"s": session, "current_id": _current_id(request)})
        else:
            response = render(request, "conversations/session_list.html#deleted_row", {"s": session})
        return _after(response, say=f"Deleted “{_title_of(session)}”. Undo is possible for {seconds} seconds.",
                      focus=f"#srow-{session.pk} button, #session-{session.pk} button")
    flash.info(request, f"Deleted “{session}”. You can undo this below for a while.")
    return redirect("conversations:session_list")


@require_POST
def session_restore(request: HttpRequest, session_id) -> HttpResponse:
    session = get_restorable_session_for(request.user, session_id)
    if session is None:
        raise Http404("Nothing to restore: no such session, or its undo time has passed.")
    services.session_restore(session=session)
    if _is_partial(request):
        return _after(_row(request, session), say=f"Restored “{_title_of(session)}”.",
                      focus=f"#srow-{session.pk} .stitle, #session-{session.pk} .title")
    return redirect("conversations:session_list")


# --- the chat -------------------------------------------------------------------------------------

def _chat_context(request, session: Session, *, reach_depth: int | None = None) -> dict:
    """The chat page's context: the newest CHAT_WINDOW turns of the active branch (reaching back to
    ``reach_depth`` when given, at most MAX_WINDOW turns), branch totals, the agent picker and the
    model that will answer, the run streaming at the end of the branch (the composer's Stop), and
    the sessions sidebar."""
    limit = CHAT_WINDOW
    turns = []
    if session.active_run_id is not None:
        if reach_depth is not None:
            leaf_depth = pages.depth_of(session.active_run_id) or 0
            limit = max(CHAT_WINDOW, min(MAX_WINDOW, leaf_depth - reach_depth + 3))
        turns = paths.branch_window(session, session.active_run_id, limit)
        paths.attach_compactions(turns)
    agents = list(pages.pickable_agents(request.user))
    models = list(pickable_models(request.user))
    last_agent = turns[-1].run.agent_id if turns else session.default_agent_id
    last_model = None
    if turns and turns[-1].run.agent_id is None and turns[-1].run.connection_id is not None:  # a model was picked
        picked = find_model(models, turns[-1].run.connection_id, turns[-1].run.model)
        last_model = picked.pk if picked is not None else None
    source = pages.fork_source(session)
    default_model, answer_model = _answerer_labels(session, agents, models, last_agent, last_model)
    last = turns[-1].run if turns else None
    return {
        "session": session,
        "turns": turns,
        "has_older": bool(turns) and turns[0].run.parent_run_id is not None,
        "totals": paths.branch_totals(session.active_run_id),
        "last_run": last,
        "agents": agents,
        "models": models,
        "selected_agent_id": last_agent,
        "default_model": default_model,
        "answer_model": answer_model,
        "selected_model_id": last_model,
        "source_run": source,
        "source_alive": bool(source and source.session.deleted_at is None),
        "active_statuses": ACTIVE_STATUSES,
        "streaming_run": last if last is not None and last.status in ACTIVE_STATUSES else None,
        "branch_side": True,  # the session's named branches under the sessions in the sidebar
        **_sidebar(request, session.pk),
    }


def _answerer_labels(session: Session, agents: list, models: list, agent_id, model_id) -> tuple[str, str]:
    """``(the "Default" choice's label, the picker's current choice's label)``, each ``connection ·
    model`` as runs show it (:attr:`Run.model_label`): the default is the session's default agent
    (what :func:`services.run_start` uses), else the default connection with ``ARBOR_MODEL``; the
    choice is the model ``model_id`` of a connection, else the agent ``agent_id``, else the default."""
    default = f"Default · {settings.ARBOR_MODEL}"
    if session.default_agent_id is not None:
        agent = next((a for a in agents if a.pk == session.default_agent_id), None) or session.default_agent
        default = agent.model_label
    model = next((m for m in models if m.pk == model_id), None) if model_id is not None else None
    if model is not None:
        return default, f"{model.connection.name} · {model.name}"
    agent = next((a for a in agents if a.pk == agent_id), None)
    return default, agent.model_label if agent is not None else default


@require_GET
def session_detail(request: HttpRequest, session_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    at = request.GET.get("at")
    context = _chat_context(request, session, reach_depth=pages.depth_of(at) if at else None)
    if _is_partial(request):
        return render(request, "conversations/session.html#thread", context)
    return render(request, "conversations/session.html", context)


@require_GET
def session_older(request: HttpRequest, session_id) -> HttpResponse:
    """Turns above ``?before=<run_id>`` on the active branch (CHAT_WINDOW of them): a partial that
    replaces the "older turns" loader for htmx, a page of its own without JavaScript."""
    session = get_session_for(request.user, session_id)
    before = _branch_run(request, session, request.GET.get("before", ""))
    turns = paths.branch_window(session, before.pk, CHAT_WINDOW, skip_start=True)
    paths.attach_compactions(turns)
    context = {
        "session": session, "turns": turns, "active_statuses": ACTIVE_STATUSES,
        "has_older": bool(turns) and turns[0].run.parent_run_id is not None, "before": before,
    }
    if _is_partial(request):
        first = f"turn {turns[0].run.depth + 1}" if turns else ""
        return _after(render(request, "conversations/session.html#older_turns", context),
                      say=f"Loaded {len(turns)} older turn{'s' if len(turns) != 1 else ''}, from {first}.")
    return render(request, "conversations/older.html", context)


def _thread_or_redirect(request, session: Session, anchor_run_id=None, *, say: str = "",
                        focus: str = "") -> HttpResponse:
    """The re-rendered thread for htmx (focus and announcement as :func:`_after`), else a redirect
    to the chat (at ``anchor_run_id`` when given)."""
    if _is_partial(request):
        session.refresh_from_db()  # the first message names an untitled session: refresh the heading too
        context = {**_chat_context(request, session), "oob_title": True}
        return _after(render(request, "conversations/session.html#thread", context), say=say, focus=focus,
                      renamed={"id": str(session.pk), "title": session.title})  # the sidebar's row too
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
    leaf = paths.newest_leaf_below(session, run)
    services.session_set_active(session=session, run=leaf)
    if _is_partial(request):
        context = _chat_context(request, session, reach_depth=run.depth)
        turn = next((t for t in context["turns"] if t.run.pk == run.pk), None)
        say = (f"Turn {run.depth + 1}: version {turn.sibling_index} of {turn.sibling_count}." if turn else
               f"Opened the branch at turn {run.depth + 1}.")
        return _after(render(request, "conversations/session.html#thread", context), say=say,
                      focus=f"#turn-{run.pk}")
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
        model = pages.picked_model(request.user, int(model_id)) if model_id.isdigit() else None
        if model is None:
            raise InvalidInput("Pick one of your connections' models (or an agent, or the default).")
        return {"connection": model.connection, "model": model.name}
    try:
        agent = pages.picked_agent(request.user, int(choice))
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
        run = services.run_start(session=session, input=request.POST.get("input", ""), **_answerer_from(request),
                                 **kwargs)
    except ArborError as exc:
        return _error(request, exc, session)
    return _thread_or_redirect(request, session, say=f"Sent. {run.model_label} is answering.", focus="#id_input")


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
    return _thread_or_redirect(request, session, new.pk, focus=f"#turn-{new.pk}",
                               say=f"Edited turn {new.depth + 1}: a new version is being answered.")


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
    verb = "Retrying" if run.status == RunStatus.FAILED else "Regenerating"
    return _thread_or_redirect(request, session, new.pk, focus=f"#turn-{new.pk}",
                               say=f"{verb} turn {new.depth + 1}: a new version is being answered.")


@require_POST
def run_rewind(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Continue from here: the branch shown ends at this run; the next message branches from it."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    services.session_rewind(session=session, run=run)
    return _thread_or_redirect(request, session, run.pk, focus="#id_input",
                               say=f"Showing the branch up to turn {run.depth + 1}; your next message continues "
                                   f"from there.")


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
        # partial text the worker kept (and the composer's Stop turns back into Send).
        return _after(HttpResponse(status=204), say="Stopping the reply.", focus="#id_input", swapped=False)
    return _thread_or_redirect(request, session)


@require_POST
@limit_run_creation
def run_continue(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Continue generating an answer cut at its token limit (:func:`services.run_continue`)."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    if not settings.ARBOR_CHAT_CONTINUE:
        raise Http404("Continue generating is turned off.")
    try:
        new = services.run_continue(run=run, session=session)
    except ArborError as exc:
        return _error(request, exc, session)
    return _thread_or_redirect(request, session, new.pk, focus=f"#turn-{new.pk}",
                               say=f"Continuing the answer of turn {run.depth + 1}.")


_RATINGS = {"up": 1, "down": -1, "": None}


@require_POST
def run_rate(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Thumbs up or down on an answer (``rating`` up/down; empty clears it): the turn again."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    if not settings.ARBOR_CHAT_THUMBS:
        raise Http404("Thumbs are turned off.")
    choice = request.POST.get("rating", "")
    if choice not in _RATINGS or run.session_id != session.pk:
        return _error(request, InvalidInput("rating must be up, down or empty."), session)
    services.run_rate(run=run, rating=_RATINGS[choice])
    if not _is_partial(request):
        return _thread_or_redirect(request, session, run.pk)
    said = {1: "Marked as a good answer.", -1: "Marked as a bad answer.", None: "Rating cleared."}[run.rating]
    response = _turn_response(request, session, run)
    response["HX-Trigger-After-Settle"] = json.dumps({"arbor:after": {
        "say": said, "focus": f"#turn-{run.pk} .rate[aria-pressed=true], #turn-{run.pk} .rate.{choice or 'up'}"}})
    return response


@require_POST
def session_pin(request: HttpRequest, session_id) -> HttpResponse:
    """Pin a session to the top of the sidebar (``pinned=1``) or unpin it: the sidebar's list again."""
    session = get_session_for(request.user, session_id)
    services.session_pin(session=session, pinned=request.POST.get("pinned") == "1")
    if not _is_partial(request):
        current = _current_id(request)
        if current is not None:
            return redirect("conversations:session_detail", session_id=current)
        return redirect("conversations:session_list")
    say = f"Pinned “{_title_of(session)}”." if session.pinned_at else f"Unpinned “{_title_of(session)}”."
    side = _sidebar(request, _current_id(request))
    return _after(render(request, "conversations/_sessions_sidebar.html#side_results", side),
                  say=say, focus=f"#srow-{session.pk} .pin")


@require_GET
def run_stream(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """HTML-flavoured SSE of a run for the htmx SSE extension."""
    session = get_session_for(request.user, session_id)
    run = _branch_run(request, session, run_id)
    return sse_response(run.pk, request.headers.get("Last-Event-ID"), RUN_SOURCE, html=True)


_DONE_SAY = {RunStatus.SUCCEEDED: "The reply is complete.", RunStatus.CANCELLED: "Stopped; the partial reply is kept.",
             RunStatus.FAILED: "The reply failed; Retry is below it."}


@require_GET
def run_turn(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """One turn of the thread (the partial the page swaps in when a streamed reply is done)."""
    session = get_session_for(request.user, session_id)
    return _turn_response(request, session, _branch_run(request, session, run_id))


def _turn_response(request, session: Session, run: Run) -> HttpResponse:
    """``run``'s turn as the thread shows it, with the branch facts out of band when it is the active run."""
    turn = paths.turn_of(session, run)
    context = {"session": session, "turn": turn, "active_statuses": ACTIVE_STATUSES}
    if run.pk == session.active_run_id:  # the branch's facts changed too: swap them out of band
        context.update(oob=True, totals=paths.branch_totals(run.pk), last_run=run)
    return _after(render(request, "conversations/session.html#turn_done", context),
                  say=_DONE_SAY.get(run.status, ""), done=str(run.pk))


# --- the tree view --------------------------------------------------------------------------------

@require_GET
def session_tree(request: HttpRequest, session_id) -> HttpResponse:
    """The session as a tree. ``?root=<run_id>``: only the subtree below that run (how a "show
    more" link loads); ``?chain=<run_id>&n=<count>``: an elided straight stretch of runs."""
    session = get_session_for(request.user, session_id)
    skeleton = trees.tree_skeleton(session)
    root_id, chain_id = request.GET.get("root"), request.GET.get("chain")
    mode = "tree"
    try:
        if chain_id:
            start = skeleton.get(chain_id)
            if start is None:
                raise Http404("No such run in this session.")
            count = max(1, min(int(request.GET.get("n", "1")), 100_000))
            items, mode = trees.chain_items(start, count), "chain"
        elif root_id:
            start = skeleton.get(root_id)
            if start is None:
                raise Http404("No such run in this session.")
            items, mode = trees.plan_tree([start], budget=TREE_BUDGET), "subtree"
        else:
            items = trees.plan_tree(skeleton.roots, budget=TREE_BUDGET)
    except ValueError:
        raise Http404("No such run in this session.") from None
    links = runs.provenance_edges(session) if mode == "tree" else []
    plan = treemap.plan_map(skeleton, _ids(request, "expand"), _ids(request, "unfold"), links=links) \
        if mode == "tree" else None
    facts = pages.attach_previews(items, also=treemap.drawn_ids(plan))  # one query for the list and the map
    source = pages.fork_source(session)
    context = {
        "session": session, "items": items, "mode": mode, "run_count": len(skeleton.nodes),
        "source_run": source, "source_alive": bool(source and source.session.deleted_at is None),
        "map": (treemap.render_svg(skeleton, plan, facts, trees.branch_names(session), links)
                if plan is not None else None),
    }
    if _is_partial(request) and mode != "tree":
        return render(request, "conversations/tree.html#items", context)
    return render(request, "conversations/tree.html", {**context, **_sidebar(request, session.pk)})


def _ids(request, name: str) -> list[str]:
    """Run ids of ``?<name>=<id>,<id>,…`` (at most 200; unknown or malformed ones are ignored)."""
    return [part for part in request.GET.get(name, "").split(",") if part.strip()][:200]


@require_GET
def session_tree_map(request: HttpRequest, session_id) -> HttpResponse:
    """The tree map alone (the fragment the map swaps in when a collapsed stretch or a folded
    subtree is expanded): ``?expand=<run id>,…`` names the runs below collapsed stretches to draw in
    full, ``?unfold=<run id>,…`` the runs whose folded children to draw. See
    :mod:`conversations.treemap`."""
    session = get_session_for(request.user, session_id)
    skeleton = trees.tree_skeleton(session)
    context = {"session": session, "map": treemap.tree_map(skeleton, _ids(request, "expand"), _ids(request, "unfold"),
                                                           names=trees.branch_names(session),
                                                           links=runs.provenance_edges(session))}
    return render(request, "conversations/_treemap.html", context)
