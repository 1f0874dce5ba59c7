"""The chat: the active branch (newest turns first, older ones on scroll), the answerer picker's
labels, opening a branch through a run."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from connections.selectors import find_model, pickable_models

from .. import services
from ..models import ACTIVE_STATUSES, Session
from ..selectors import get_session_for, pages, paths
from .common import after, branch_run, is_partial, sidebar

CHAT_WINDOW = 30  # turns rendered at first (newest); older ones load on scroll, as many at a time
MAX_WINDOW = paths.MAX_WINDOW  # at most this many turns when a page must reach back to a given turn


def chat_context(request, session: Session, *, reach_depth: int | None = None) -> dict:
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
        **sidebar(request, session.pk),
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
    context = chat_context(request, session, reach_depth=pages.depth_of(at) if at else None)
    if is_partial(request):
        return render(request, "conversations/session.html#thread", context)
    return render(request, "conversations/session.html", context)


@require_GET
def session_older(request: HttpRequest, session_id) -> HttpResponse:
    """Turns above ``?before=<run_id>`` on the active branch (CHAT_WINDOW of them): a partial that
    replaces the "older turns" loader for htmx, a page of its own without JavaScript."""
    session = get_session_for(request.user, session_id)
    before = branch_run(request, session, request.GET.get("before", ""))
    turns = paths.branch_window(session, before.pk, CHAT_WINDOW, skip_start=True)
    paths.attach_compactions(turns)
    context = {
        "session": session, "turns": turns, "active_statuses": ACTIVE_STATUSES,
        "has_older": bool(turns) and turns[0].run.parent_run_id is not None, "before": before,
    }
    if is_partial(request):
        first = f"turn {turns[0].run.depth + 1}" if turns else ""
        return after(render(request, "conversations/session.html#older_turns", context),
                     say=f"Loaded {len(turns)} older turn{'s' if len(turns) != 1 else ''}, from {first}.")
    return render(request, "conversations/older.html", context)


def thread_or_redirect(request, session: Session, anchor_run_id=None, *, say: str = "",
                       focus: str = "") -> HttpResponse:
    """The re-rendered thread for htmx (focus and announcement as :func:`after`), else a redirect
    to the chat (at ``anchor_run_id`` when given)."""
    if is_partial(request):
        session.refresh_from_db()  # the first message names an untitled session: refresh the heading too
        context = {**chat_context(request, session), "oob_title": True}
        return after(render(request, "conversations/session.html#thread", context), say=say, focus=focus,
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
    run = branch_run(request, session, run_id)
    leaf = paths.newest_leaf_below(session, run)
    services.session_set_active(session=session, run=leaf)
    if is_partial(request):
        context = chat_context(request, session, reach_depth=run.depth)
        turn = next((t for t in context["turns"] if t.run.pk == run.pk), None)
        say = (f"Turn {run.depth + 1}: version {turn.sibling_index} of {turn.sibling_count}." if turn else
               f"Opened the branch at turn {run.depth + 1}.")
        return after(render(request, "conversations/session.html#thread", context), say=say,
                     focus=f"#turn-{run.pk}")
    return redirect(reverse("conversations:session_detail", kwargs={"session_id": session.pk})
                    + f"?at={run.pk}#turn-{run.pk}")
