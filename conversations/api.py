"""The JSON API (django-ninja): OpenAPI schema at ``/api/openapi.json``.

Authentication: the browser session (with CSRF on unsafe methods) or ``Authorization: Bearer
<token>`` (``manage.py create_api_token``). A caller never sees another user's sessions or runs:
those answer 404 exactly as ids that do not exist. Errors are JSON ``{"detail": "..."}``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.http import HttpRequest
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.pagination import PageNumberPagination, paginate
from ninja.security import HttpBearer, django_auth

from accounts.models import ApiToken
from accounts.ratelimit import limit_run_creation
from core.errors import SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE, ArborError, NotFound

from . import context as ctx
from . import services
from .models import Message, Run, Session, Step, StepKind
from .selectors import get_run_for, get_session_for
from .sse import sse_response

log = logging.getLogger(__name__)

class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = ApiToken.user_for(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="Arbor API",
    version="1",
    description="Branching LLM conversations: sessions, runs (turns) and their tree.",
    auth=[BearerToken(), django_auth],
    urls_namespace="api",
)


@api.exception_handler(ArborError)
def _arbor_error(request, exc: ArborError):
    return api.create_response(request, {"detail": exc.message}, status=exc.status)


@api.exception_handler(Exception)
def _unexpected_error(request, exc: Exception):
    """Every other failure is JSON too: 503 while a backing service is down, else 500."""
    if isinstance(exc, SERVICE_UNAVAILABLE):
        log.warning("API %s %s: service unavailable: %s", request.method, request.path, exc)
        response = api.create_response(request, {"detail": UNAVAILABLE_MESSAGE}, status=503)
        response["Retry-After"] = "5"
        return response
    log.exception("API %s %s failed", request.method, request.path)
    return api.create_response(request, {"detail": "Internal error; it has been logged."}, status=500)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    parts = []
    for error in exc.errors:
        where = ".".join(str(p) for p in error.get("loc", []) if p not in ("body", "payload"))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    body = {"detail": "; ".join(parts) or "invalid request", "errors": exc.errors}
    return api.create_response(request, body, status=400)


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    body = {"detail": "Authentication required: log in or send a Bearer token."}
    return api.create_response(request, body, status=401)


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
    input: str
    parent_run_id: uuid.UUID | None = None
    model: str | None = None
    params: dict | None = None


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


class ContextOut(Schema):
    model: str
    params: dict
    messages: list[dict]
    sha256: str
    verified: bool


class TreeNode(Schema):
    run_id: uuid.UUID
    parent_run_id: uuid.UUID | None
    status: str
    depth: int
    created_at: datetime
    shared: bool


class TreeOut(Schema):
    session_id: uuid.UUID
    active_run_id: uuid.UUID | None
    runs: list[TreeNode]


class ForkOut(Schema):
    session_id: uuid.UUID


class ActiveIn(Schema):
    run_id: uuid.UUID


class EditIn(Schema):
    input: str


class Detail(Schema):
    detail: str


# --- lookups: another user's objects are 404, like missing ones ----------------------------------

def _session_out(session: Session) -> dict:
    return {
        "id": session.pk, "title": session.title, "active_run_id": session.active_run_id,
        "forked_from_run_id": session.forked_from_run_id,
        "created_at": session.created_at, "updated_at": session.updated_at,
    }


def run_out(run: Run) -> dict:
    texts = dict(
        Message.objects.filter(run=run, role__in=["user", "assistant"]).order_by("position")
        .values_list("role", "content")
    )
    return {
        "run_id": run.pk, "session_id": run.session_id, "parent_run_id": run.parent_run_id,
        "status": run.status, "depth": run.depth, "input": texts.get("user", ""),
        "output": texts.get("assistant"), "model": run.model, "params": run.params, "usage": run.usage,
        "timings": {
            "created_at": run.created_at, "started_at": run.started_at,
            "first_token_at": run.first_token_at, "finished_at": run.finished_at,
        },
        "error": run.error,
    }


# --- sessions -------------------------------------------------------------------------------------

@api.post("/sessions", response={201: SessionOut}, tags=["sessions"])
def create_session(request, payload: SessionIn = None):
    session = services.session_create(owner=request.auth, title=(payload.title if payload else "") or "")
    return Status(201, _session_out(session))


@api.get("/sessions", response=list[SessionOut], tags=["sessions"])
@paginate(PageNumberPagination, page_size=20)
def list_sessions(request):
    """The caller's sessions, most recently active first."""
    return Session.objects.alive().owned_by(request.auth).order_by("-updated_at")


@api.get("/sessions/{session_id}", response=SessionOut, tags=["sessions"])
def get_session(request, session_id: str):
    return _session_out(get_session_for(request.auth, session_id))


@api.delete("/sessions/{session_id}", response={204: None}, tags=["sessions"])
def delete_session(request, session_id: str):
    """Soft-delete. Forks of this session keep working."""
    services.session_delete(session=get_session_for(request.auth, session_id))
    return Status(204, None)


@api.post("/sessions/{session_id}/runs", response={202: RunAccepted}, tags=["runs"])
@limit_run_creation
def start_run(request, session_id: str, payload: RunIn):
    """Start a run. Without ``parent_run_id`` it continues the session's active run; with it, it
    branches from that run (any run of the session's tree, a fork's shared ancestors included)."""
    session = get_session_for(request.auth, session_id)
    kwargs = {}
    if payload.parent_run_id is not None:
        parent = Run.objects.filter(pk=payload.parent_run_id).first()
        if parent is None or not session.can_branch_from(parent):
            raise NotFound("parent_run_id is not a run of this session.")
        kwargs["parent"] = parent
    run = services.run_start(session=session, input=payload.input, model=payload.model, params=payload.params, **kwargs)
    return Status(202, {"run_id": run.pk, "status": run.status})


@api.get("/sessions/{session_id}/tree", response=TreeOut, tags=["sessions"])
def session_tree(request, session_id: str):
    """Every run of the session's tree; ``shared`` marks a fork's ancestors from its source session."""
    session = get_session_for(request.auth, session_id)
    rows = session.visible_runs().order_by("depth", "created_at").values(
        "id", "parent_run_id", "status", "depth", "created_at", "session_id",
    )
    return {
        "session_id": session.pk, "active_run_id": session.active_run_id,
        "runs": [
            {"run_id": r["id"], "parent_run_id": r["parent_run_id"], "status": r["status"], "depth": r["depth"],
             "created_at": r["created_at"], "shared": r["session_id"] != session.pk}
            for r in rows
        ],
    }


@api.post("/sessions/{session_id}/active", response=SessionOut, tags=["sessions"])
def set_active(request, session_id: str, payload: ActiveIn):
    """Show the branch through ``run_id`` (its newest leaf becomes the active run)."""
    session = get_session_for(request.auth, session_id)
    run = Run.objects.filter(pk=payload.run_id).first()
    if run is None:
        raise NotFound("No such run in this session.")
    services.session_set_active(session=session, run=run)
    return _session_out(session)


# --- runs -----------------------------------------------------------------------------------------

@api.get("/runs/{run_id}", response=RunOut, tags=["runs"])
def get_run(request, run_id: str):
    return run_out(get_run_for(request.auth, run_id))


@api.get("/runs/{run_id}/context", response=ContextOut, tags=["runs"])
def get_run_context(request, run_id: str):
    """Exactly what the run's (last) model call sent: rebuilt from the stored spec and checked
    against the SHA-256 recorded when it was sent (``verified``; False when none was recorded).
    409 before the first call; 500 when the stored spec no longer rebuilds."""
    run = get_run_for(request.auth, run_id)
    step = Step.objects.filter(run=run, kind=StepKind.LLM_CALL).order_by("-started_at", "-id").first()
    if step is None:
        raise HttpError(409, "This run has not called the model yet.")
    checked = ctx.verify(run, step.request)
    if checked["messages"] is None:
        raise HttpError(500, f"This call's context could not be rebuilt: {checked['error'] or 'no stored spec'}.")
    return {
        "model": step.request.get("model", run.model), "params": step.request.get("params", {}),
        "messages": checked["messages"], "sha256": checked["sha256"], "verified": bool(checked["verified"]),
    }


EVENTS_DOC = {"responses": {200: {"description": "text/event-stream of `status`, `delta`, `restart` and `done` events",
                                  "content": {"text/event-stream": {}}}}}


@api.get("/runs/{run_id}/events", tags=["runs"], response={200: None}, openapi_extra=EVENTS_DOC)
def run_events(request, run_id: str):
    """Server-Sent Events of the run; honours ``Last-Event-ID`` (header or ``last_event_id`` query)."""
    run = get_run_for(request.auth, run_id)
    last = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    return sse_response(run.pk, last)


@api.post("/runs/{run_id}/cancel", response=RunOut, tags=["runs"])
def cancel_run(request, run_id: str):
    return run_out(services.run_cancel(run=get_run_for(request.auth, run_id)))


@api.post("/runs/{run_id}/fork", response={201: ForkOut}, tags=["runs"])
def fork_run(request, run_id: str):
    """A new session continuing from this run; its ancestors are shared, not copied."""
    session = services.session_fork(run=get_run_for(request.auth, run_id), owner=request.auth)
    return Status(201, {"session_id": session.pk})


@api.post("/runs/{run_id}/regenerate", response={202: RunAccepted}, tags=["runs"])
@limit_run_creation
def regenerate_run(request, run_id: str):
    """A sibling with the same input (also the retry of a failed run)."""
    run = get_run_for(request.auth, run_id)
    new = services.run_regenerate(run=run, session=_owning_session(request, run))
    return Status(202, {"run_id": new.pk, "status": new.status})


@api.post("/runs/{run_id}/edit", response={202: RunAccepted}, tags=["runs"])
@limit_run_creation
def edit_run(request, run_id: str, payload: EditIn):
    """A sibling with new input: the edited user message."""
    run = get_run_for(request.auth, run_id)
    new = services.run_edit(run=run, input=payload.input, session=_owning_session(request, run))
    return Status(202, {"run_id": new.pk, "status": new.status})


def _owning_session(request, run: Run) -> Session:
    session_id = request.GET.get("session_id")
    return get_session_for(request.auth, session_id) if session_id else get_session_for(request.auth, run.session_id)
