"""Audit pages for staff: a run's full trace, and the audit log export.

Only active staff with the matching *view* permission (superusers, the auditor group) may open
them; anyone else gets 404, as for ids that do not exist. Opening another user's run is itself
recorded (``staff.view``).
"""

from __future__ import annotations

import json
import uuid

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations import context as ctx
from core.redact import mask_secrets
from conversations.models import Run, Session, Step

from .export import CONTENT_TYPES, export_response
from .log import record
from .models import AuditLog


def _require(request: HttpRequest, perm: str) -> None:
    user = request.user
    if not (user.is_active and user.is_staff and user.has_perm(perm)):
        raise Http404("No such page.")


def _pretty(value) -> str:
    return json.dumps(mask_secrets(value), cls=DjangoJSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)


def _exact_request(run: Run, step: Step) -> dict:
    """What a model call sent, rebuilt from the step's stored spec and checked against its SHA-256.

    Returns ``{"body", "verified", "sha256", "error"}``; ``body`` is the request (API keys masked)
    with the rebuilt ``messages``; ``verified`` is None when the step stored no digest.
    """
    request = dict(step.request or {})
    spec = request.get("context")
    if not isinstance(spec, dict):
        return {"body": None, "verified": None, "sha256": None, "error": None}
    try:
        messages = ctx.rebuild(run, spec)
    except Exception as exc:  # noqa: BLE001 - show why, never break the audit page
        return {"body": None, "verified": False, "sha256": None, "error": f"{type(exc).__name__}: {exc}"}
    sha = ctx.digest(messages)
    body = {"model": request.get("model", run.model), "messages": messages, **(request.get("params") or {})}
    if "stream" in request:
        body["stream"] = request["stream"]
    if request.get("tools"):
        body["tools"] = request["tools"]
    expected = request.get("sha256")
    return {"body": mask_secrets(body), "verified": (sha == expected) if expected else None, "sha256": sha,
            "error": None}


def _step_tree(run: Run) -> list[dict]:
    """The run's steps as nested nodes ``{"step", "children", "offset", "duration", "request", ...}``
    (offset: seconds after the run started), read in one query."""
    steps = list(run.steps.order_by("started_at", "id"))
    start = run.started_at or (steps[0].started_at if steps else None)
    nodes = {}
    for step in steps:
        nodes[step.pk] = {
            "step": step,
            "children": [],
            "offset": (step.started_at - start).total_seconds() if start else None,
            "duration": step.duration_seconds(),
            "request_json": _pretty(step.request) if step.request else "",
            "response_json": _pretty(step.response) if step.response else "",
            "error_json": _pretty(step.error) if step.error else "",
            "exact": _exact_request(run, step) if step.kind == "llm_call" else None,
        }
        if nodes[step.pk]["exact"] and nodes[step.pk]["exact"]["body"] is not None:
            nodes[step.pk]["exact"]["json"] = _pretty(nodes[step.pk]["exact"]["body"])
    roots = []
    for step in steps:
        parent = nodes.get(step.parent_step_id)
        (parent["children"] if parent else roots).append(nodes[step.pk])
    return roots


@require_GET
def run_audit(request: HttpRequest, run_id) -> HttpResponse:
    """A run's audit page: place in the tree, the step trace with timings, exact requests, usage."""
    _require(request, "conversations.view_run")
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        raise Http404("No such run.") from None
    run = Run.objects.select_related("session__owner", "parent_run", "agent").filter(pk=pk).first()
    if run is None:
        raise Http404("No such run.")
    path = list(Run.objects.ancestor_of(run).order_by("depth").only("id", "depth", "status", "session_id"))
    siblings = list(Run.objects.sibling_of(run, inclusive=False).order_by("created_at"))
    children = list(Run.objects.children_of(run).order_by("created_at"))
    forks = list(Session.objects.filter(forked_from_run=run).select_related("owner"))
    context = {
        **admin.site.each_context(request),
        "title": f"Run {run.pk}",
        "run": run,
        "session": run.session,
        "path": path,
        "siblings": siblings,
        "children": children,
        "forks": forks,
        "messages_of_run": list(run.messages.order_by("position")),
        "steps": _step_tree(run),
        "params_json": _pretty(run.params),
        "ttft": run.time_to_first_token_seconds(),
        "latency": run.latency_seconds(),
    }
    if run.session.owner_id != request.user.pk:
        record("staff.view", target=run, details={"owner_id": run.session.owner_id, "page": "audit.run"})
    return render(request, "audit/run.html", context)


@require_GET
def log_export(request: HttpRequest) -> HttpResponse:
    """The audit log as CSV or JSONL (``?format=csv|jsonl``), filtered like the admin's list
    (same query parameters: ``action__exact``, ``actor__id__exact``, ``created_at__gte``, ``q``...)."""
    _require(request, "audit.view_auditlog")
    fmt = request.GET.get("format", "csv")
    if fmt not in CONTENT_TYPES:
        return HttpResponseBadRequest("format must be csv or jsonl")
    model_admin = admin.site._registry[AuditLog]
    filters = request.GET.copy()
    filters.pop("format", None)
    original = request.GET
    request.GET = filters
    try:
        changelist = model_admin.get_changelist_instance(request)
        queryset = changelist.get_queryset(request)
    except Exception as exc:  # noqa: BLE001 - IncorrectLookupParameters and bad dates alike
        return HttpResponseBadRequest(f"Invalid filter: {exc}")
    finally:
        request.GET = original
    return export_response(request, queryset, fmt)
