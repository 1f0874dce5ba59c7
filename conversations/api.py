"""The JSON API of sessions and runs (a django-ninja router, mounted by :mod:`config.api`).

A caller never sees another user's sessions or runs: those answer 404 exactly as ids that do not
exist. Errors are JSON ``{"detail": "..."}`` (:class:`core.api_kit.Detail`), and each operation's
``response=`` lists every status it answers (:func:`core.api_kit.answers`), so ``/api/openapi.json``
documents them all.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.conf import settings
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from ninja.pagination import paginate

from accounts.api_auth import ASYNC_AUTH
from accounts.ratelimit import limit_run_creation
from connections.selectors import get_connection_for
from core.api_kit import BODY, MAX_PAGE_SIZE, Pages, answers
from core.asyncdb import request_call
from core.errors import InvalidInput, NotFound
from memory.selectors import get_agent_for
from streams.sse import sse_response

from . import context_spec as ctx
from . import services
from .models import Run, Session
from .selectors import RUN_SOURCE, get_branch_run_for, get_run_for, get_run_to_act_on, get_session_for, runs, trees
from .selectors.ownership import sessions_of

log = logging.getLogger(__name__)

router = Router()

# --- schemas --------------------------------------------------------------------------------------

class SessionIn(Schema):
    title: str | None = None


class SessionOut(Schema):
    id: uuid.UUID
    title: str
    active_run_id: uuid.UUID | None
    forked_from_run_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class RunIn(Schema):
    input: str = Field(min_length=1, max_length=settings.ARBOR_MAX_INPUT_CHARS,
                       description="The user message (not only white space).")
    parent_run_id: uuid.UUID | None = None
    model: str | None = None
    params: dict | None = None
    agent_id: int | None = Field(None, description="The agent that answers (default: the session's default agent).")
    connection_id: int | None = Field(None, description="The model connection (default: the agent's, else the "
                                                        "default connection).")


class RunAccepted(Schema):
    run_id: uuid.UUID
    status: str


class Usage(Schema):
    prompt_tokens: int | None
    completion_tokens: int | None


class Timings(Schema):
    created_at: datetime
    started_at: datetime | None
    first_token_at: datetime | None
    finished_at: datetime | None


class ErrorOut(Schema):
    type: str
    message: str


class ProvenanceSourceOut(Schema):
    run_id: uuid.UUID
    turn: int
    pruned: bool = Field(description="The source was pruned from its tree since; the link stays.")


class ProvenanceOut(Schema):
    """Where a fused answer or a merge turn's content came from (extra edges; the parent path is unchanged)."""

    kind: str = Field(description="``fuse`` or ``merge``.")
    mode: str = Field(description="A merge's ``turns`` or ``digest``; empty for a fuse.")
    source_run_id: uuid.UUID | None = Field(description="A merge's source branch run.")
    source_turn: int | None
    source_pruned: bool
    branch_name: str = Field(description="The source branch's label when merged (empty: none).")
    sources: list[ProvenanceSourceOut] = Field(description="Fused answers, or the turns a merge carried.")


class RunOut(Schema):
    run_id: uuid.UUID
    session_id: uuid.UUID
    parent_run_id: uuid.UUID | None
    status: str
    depth: int
    input: str
    output: str | None
    model: str
    params: dict
    usage: Usage
    timings: Timings
    error: ErrorOut | None
    provenance: ProvenanceOut | None = Field(None, description="Set on a fused answer or a merge turn.")


class ContextPart(Schema):
    index: int = Field(description="Position of the message in ``messages``.")
    part: str = Field(description="system, summary, pin, memory (a pin of another memory id), history, tool, input "
                                  "or tail.")
    tokens: int


class ContextOut(Schema):
    model: str
    params: dict
    messages: list[dict]
    sha256: str
    verified: bool
    context_tokens: int | None = Field(description="Tokens of the context as counted when it was built.")
    usable_window: int | None = Field(description="Tokens: context window − reserved output.")
    parts: list[ContextPart] | None = Field(description="Each message's part and tokens; null for calls recorded "
                                                        "before parts were.")
    totals: dict[str, int] | None = Field(description="Tokens per part (``primer``: the reply primer).")
    not_seen: list[str] = Field(description="Plain sentences: what this turn's path holds that the model was not "
                                            "sent (summarised, left out, other memory ids).")


class TreeNode(Schema):
    run_id: uuid.UUID
    parent_run_id: uuid.UUID | None
    status: str
    depth: int
    created_at: datetime
    shared: bool
    provenance: ProvenanceOut | None = Field(None, description="Set on a fused answer or a merge turn.")


class TreeOut(Schema):
    session_id: uuid.UUID
    active_run_id: uuid.UUID | None
    runs: list[TreeNode]


class ForkOut(Schema):
    session_id: uuid.UUID


class ActiveIn(Schema):
    run_id: uuid.UUID


class EditIn(Schema):
    input: str = Field(min_length=1, max_length=settings.ARBOR_MAX_INPUT_CHARS,
                       description="The edited user message (not only white space).")


RUN_START = (*BODY, 404, 409, 429)  # creates a run: also no such parent (404), still running (409), rate (429)


# --- lookups: another user's objects are 404, like missing ones ----------------------------------

def _session_out(session: Session) -> dict:
    return {
        "id": session.pk, "title": session.title, "active_run_id": session.active_run_id,
        "forked_from_run_id": session.forked_from_run_id,
        "created_at": session.created_at, "updated_at": session.updated_at,
    }


def run_out(run: Run) -> dict:
    texts = runs.run_texts(run)
    return {
        "run_id": run.pk, "session_id": run.session_id, "parent_run_id": run.parent_run_id,
        "status": run.status, "depth": run.depth, "input": texts.get("user", ""),
        "output": texts.get("assistant"), "model": run.model, "params": run.params, "usage": run.usage,
        "timings": {
            "created_at": run.created_at, "started_at": run.started_at,
            "first_token_at": run.first_token_at, "finished_at": run.finished_at,
        },
        "error": run.error, "provenance": runs.provenance_for([run.pk]).get(run.pk),
    }


# --- sessions -------------------------------------------------------------------------------------

@router.post("/sessions", response=answers({201: SessionOut}, *BODY), tags=["sessions"])
def create_session(request, payload: SessionIn = None):
    session = services.session_create(owner=request.auth, title=(payload.title if payload else "") or "")
    return Status(201, _session_out(session))


@router.get("/sessions", response=answers({200: list[SessionOut]}, 400, 404), tags=["sessions"])
@paginate(Pages, page_size=20, max_page_size=MAX_PAGE_SIZE)
def list_sessions(request):
    """The caller's sessions, most recently active first."""
    return sessions_of(request.auth)


@router.get("/sessions/{session_id}", response=answers({200: SessionOut}, 404), tags=["sessions"])
def get_session(request, session_id: str):
    return _session_out(get_session_for(request.auth, session_id))


@router.delete("/sessions/{session_id}", response=answers({204: None}, 404), tags=["sessions"])
def delete_session(request, session_id: str):
    """Soft-delete. Forks of this session keep working."""
    services.session_delete(session=get_session_for(request.auth, session_id))
    return Status(204, None)


@router.post("/sessions/{session_id}/runs", response=answers({202: RunAccepted}, *RUN_START), tags=["runs"],
             auth=ASYNC_AUTH)
@limit_run_creation
async def start_run(request, session_id: str, payload: RunIn):
    """Start a run. Without ``parent_run_id`` it continues the session's active run; with it, it
    branches from that run (any run of the session's tree, a fork's shared ancestors included).
    ``agent_id`` and ``connection_id`` choose who answers and where (another user's: 404)."""
    run = await request_call(_start_run)(request.auth, session_id, payload)
    return Status(202, {"run_id": run.pk, "status": run.status})


def _start_run(user, session_id: str, payload: RunIn) -> Run:
    session = get_session_for(user, session_id)
    kwargs = {}
    if payload.agent_id is not None:
        kwargs["agent"] = get_agent_for(user, payload.agent_id)
    if payload.connection_id is not None:
        kwargs["connection"] = get_connection_for(user, payload.connection_id)
    if payload.parent_run_id is not None:
        kwargs["parent"] = get_branch_run_for(user, session, payload.parent_run_id)
    return services.run_start(session=session, input=payload.input, model=payload.model, params=payload.params,
                              **kwargs)


@router.get("/sessions/{session_id}/tree", response=answers({200: TreeOut}, 404), tags=["sessions"])
def session_tree(request, session_id: str):
    """Every run of the session's tree; ``shared`` marks a fork's ancestors from its source session."""
    session = get_session_for(request.auth, session_id)
    rows = trees.tree_rows(session)
    provenance = runs.provenance_for([r["id"] for r in rows])
    return {
        "session_id": session.pk, "active_run_id": session.active_run_id,
        "runs": [
            {"run_id": r["id"], "parent_run_id": r["parent_run_id"], "status": r["status"], "depth": r["depth"],
             "created_at": r["created_at"], "shared": r["session_id"] != session.pk,
             "provenance": provenance.get(r["id"])}
            for r in rows
        ],
    }


@router.post("/sessions/{session_id}/active", response=answers({200: SessionOut}, *BODY, 404), tags=["sessions"])
def set_active(request, session_id: str, payload: ActiveIn):
    """Show the branch through ``run_id`` (its newest leaf becomes the active run)."""
    session = get_session_for(request.auth, session_id)
    run = runs.find_run(payload.run_id)
    if run is None:
        raise NotFound("No such run in this session.")
    services.session_set_active(session=session, run=run)
    return _session_out(session)


# --- runs -----------------------------------------------------------------------------------------

@router.get("/runs/{run_id}", response=answers({200: RunOut}, 404), tags=["runs"])
def get_run(request, run_id: str):
    return run_out(get_run_for(request.auth, run_id))


@router.get("/runs/{run_id}/context", response=answers({200: ContextOut}, 404, 409, 500), tags=["runs"])
def get_run_context(request, run_id: str):
    """Exactly what the run's (last) model call sent: rebuilt from the stored spec and checked
    against the SHA-256 recorded when it was sent (``verified``; False when none was recorded).
    409 before the first call; 500 when the stored spec no longer rebuilds."""
    run = get_run_for(request.auth, run_id)
    step = runs.last_model_call(run)
    if step is None:
        raise HttpError(409, "This run has not called the model yet.")
    saw = ctx.model_saw(run, step)
    if saw["messages"] is None:
        raise HttpError(500, f"This call's context could not be rebuilt: {saw['error'] or 'no stored spec'}.")
    return saw


EVENTS_DOC = {"responses": {200: {"description": "text/event-stream of `status`, `delta`, `restart` and `done` events",
                                  "content": {"text/event-stream": {}}}}}


@router.get("/runs/{run_id}/events", tags=["runs"], response=answers({200: None}, 404), openapi_extra=EVENTS_DOC,
            auth=ASYNC_AUTH)
async def run_events(request, run_id: str):
    """Server-Sent Events of the run; honours ``Last-Event-ID`` (header or ``last_event_id`` query)."""
    run = await request_call(get_run_for)(request.auth, run_id)
    last = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    return sse_response(run.pk, last, RUN_SOURCE, finished=run.is_finished)


@router.post("/runs/{run_id}/cancel", response=answers({200: RunOut}, 404, 409), tags=["runs"])
def cancel_run(request, run_id: str):
    return run_out(services.run_cancel(run=get_run_for(request.auth, run_id)))


def _only_query(request, *allowed: str) -> None:
    """400 naming any query parameter the operation does not take (none is silently ignored)."""
    unknown = sorted(set(request.GET) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown query parameters: {', '.join(unknown)[:200]}")


@router.post("/runs/{run_id}/fork", response=answers({201: ForkOut}, 400, 404, 409), tags=["runs"])
def fork_run(request, run_id: str, session_id: str | None = None):
    """A new session continuing from this run; its ancestors are shared, not copied. ``session_id``:
    the session acting (a fork forking one of its shared ancestors); default the run's own. A run
    of a deleted session is 404 here as for edit and regenerate; an unknown query parameter is 400."""
    _only_query(request, "session_id")
    _, run = get_run_to_act_on(request.auth, run_id, session_id)
    session = services.session_fork(run=run, owner=request.auth)
    return Status(201, {"session_id": session.pk})


@router.post("/runs/{run_id}/regenerate", response=answers({202: RunAccepted}, 400, 404, 409, 429), tags=["runs"])
@limit_run_creation
def regenerate_run(request, run_id: str, session_id: str | None = None):
    """A sibling with the same input (also the retry of a failed run); an unknown query parameter is 400."""
    _only_query(request, "session_id")
    session, run = get_run_to_act_on(request.auth, run_id, session_id)
    new = services.run_regenerate(run=run, session=session)
    return Status(202, {"run_id": new.pk, "status": new.status})


@router.post("/runs/{run_id}/edit", response=answers({202: RunAccepted}, *RUN_START), tags=["runs"])
@limit_run_creation
def edit_run(request, run_id: str, payload: EditIn, session_id: str | None = None):
    """A sibling with new input: the edited user message."""
    session, run = get_run_to_act_on(request.auth, run_id, session_id)
    new = services.run_edit(run=run, input=payload.input, session=session)
    return Status(202, {"run_id": new.pk, "status": new.status})
