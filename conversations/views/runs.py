"""Actions on a turn: send, edit, regenerate or retry, continue from here (rewind), fork, stop,
continue generating, rate; the turn's stream and the turn itself."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages as flash
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.ratelimit import limit_run_creation
from core.asyncdb import request_call
from core.errors import ArborError, InvalidInput
from core.refusals import answers_refusals
from streams.sse import sse_response

from .. import services
from ..models import ACTIVE_STATUSES, Run, RunStatus, Session
from ..selectors import RUN_SOURCE, get_session_for, pages, paths
from .chat import thread_or_redirect
from .common import after, branch_run, is_partial, to_chat


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
@answers_refusals(back=to_chat)
def run_create(request: HttpRequest, session_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    kwargs = {}
    parent_id = request.POST.get("parent_run_id")
    if parent_id:
        kwargs["parent"] = branch_run(request, session, parent_id)
    run = services.run_start(session=session, input=request.POST.get("input", ""), **_answerer_from(request),
                             **kwargs)
    return thread_or_redirect(request, session, say=f"Sent. {run.model_label} is answering.", focus="#id_input")


@require_POST
@limit_run_creation
@answers_refusals(back=to_chat)
def run_edit(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Edit a user message: a sibling run with the new input, shown at once."""
    session = get_session_for(request.user, session_id)
    run = branch_run(request, session, run_id)
    new = services.run_edit(run=run, input=request.POST.get("input", ""), session=session)
    return thread_or_redirect(request, session, new.pk, focus=f"#turn-{new.pk}",
                              say=f"Edited turn {new.depth + 1}: a new version is being answered.")


@require_POST
@limit_run_creation
@answers_refusals(back=to_chat)
def run_regenerate(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Regenerate an answer (or retry a failed run): a sibling with the same input."""
    session = get_session_for(request.user, session_id)
    run = branch_run(request, session, run_id)
    new = services.run_regenerate(run=run, session=session)
    verb = "Retrying" if run.status == RunStatus.FAILED else "Regenerating"
    return thread_or_redirect(request, session, new.pk, focus=f"#turn-{new.pk}",
                              say=f"{verb} turn {new.depth + 1}: a new version is being answered.")


@require_POST
def run_rewind(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Continue from here: the branch shown ends at this run; the next message branches from it."""
    session = get_session_for(request.user, session_id)
    run = branch_run(request, session, run_id)
    services.session_rewind(session=session, run=run)
    return thread_or_redirect(request, session, run.pk, focus="#id_input",
                              say=f"Showing the branch up to turn {run.depth + 1}; your next message continues "
                                  f"from there.")


@require_POST
@answers_refusals(back=to_chat)
def run_fork(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Fork to a new session that continues from this run (its earlier turns are shared)."""
    session = get_session_for(request.user, session_id)
    run = branch_run(request, session, run_id)
    fork = services.session_fork(run=run, owner=request.user)
    url = reverse("conversations:session_detail", kwargs={"session_id": fork.pk})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@require_POST
def run_cancel(request: HttpRequest, session_id, run_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    run = branch_run(request, session, run_id)
    try:
        services.run_cancel(run=run)
    except ArborError as exc:
        if not is_partial(request):
            flash.info(request, exc.message)
    if is_partial(request):
        # The streaming element stays: the run's "done" event swaps in the stopped turn with the
        # partial text the worker kept (and the composer's Stop turns back into Send).
        return after(HttpResponse(status=204), say="Stopping the reply.", focus="#id_input", swapped=False)
    return thread_or_redirect(request, session)


@require_POST
@limit_run_creation
@answers_refusals(back=to_chat)
def run_continue(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Continue generating an answer cut at its token limit (:func:`services.run_continue`)."""
    session = get_session_for(request.user, session_id)
    run = branch_run(request, session, run_id)
    if not settings.ARBOR_CHAT_CONTINUE:
        raise Http404("Continue generating is turned off.")
    new = services.run_continue(run=run, session=session)
    return thread_or_redirect(request, session, new.pk, focus=f"#turn-{new.pk}",
                              say=f"Continuing the answer of turn {run.depth + 1}.")


_RATINGS = {"up": 1, "down": -1, "": None}


@require_POST
@answers_refusals(back=to_chat)
def run_rate(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Thumbs up or down on an answer (``rating`` up/down; empty clears it): the turn again."""
    session = get_session_for(request.user, session_id)
    run = branch_run(request, session, run_id)
    if not settings.ARBOR_CHAT_THUMBS:
        raise Http404("Thumbs are turned off.")
    choice = request.POST.get("rating", "")
    if choice not in _RATINGS or run.session_id != session.pk:
        raise InvalidInput("rating must be up, down or empty.")
    services.run_rate(run=run, rating=_RATINGS[choice])
    if not is_partial(request):
        return thread_or_redirect(request, session, run.pk)
    said = {1: "Marked as a good answer.", -1: "Marked as a bad answer.", None: "Rating cleared."}[run.rating]
    response = _turn_response(request, session, run)
    response["HX-Trigger-After-Settle"] = json.dumps({"arbor:after": {
        "say": said, "focus": f"#turn-{run.pk} .rate[aria-pressed=true], #turn-{run.pk} .rate.{choice or 'up'}"}})
    return response


@require_GET
async def run_stream(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """HTML-flavoured SSE of a run for the htmx SSE extension (an async view: the open stream
    holds no thread)."""
    run = await request_call(_stream_run)(request, session_id, run_id)
    return sse_response(run.pk, request.headers.get("Last-Event-ID"), RUN_SOURCE, html=True,
                        finished=run.is_finished)


def _stream_run(request, session_id, run_id) -> Run:
    return branch_run(request, get_session_for(request.user, session_id), run_id)


_DONE_SAY = {RunStatus.SUCCEEDED: "The reply is complete.", RunStatus.CANCELLED: "Stopped; the partial reply is kept.",
             RunStatus.FAILED: "The reply failed; Retry is below it."}


@require_GET
def run_turn(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """One turn of the thread (the partial the page swaps in when a streamed reply is done)."""
    session = get_session_for(request.user, session_id)
    return _turn_response(request, session, branch_run(request, session, run_id))


def _turn_response(request, session: Session, run: Run) -> HttpResponse:
    """``run``'s turn as the thread shows it, with the branch facts out of band when it is the active run."""
    turn = paths.turn_of(session, run)
    context = {"session": session, "turn": turn, "active_statuses": ACTIVE_STATUSES}
    if run.pk == session.active_run_id:  # the branch's facts changed too: swap them out of band
        context.update(oob=True, totals=paths.branch_totals(run.pk), last_run=run)
    return after(render(request, "conversations/session.html#turn_done", context),
                 say=_DONE_SAY.get(run.status, ""), done=str(run.pk))


