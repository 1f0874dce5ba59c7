"""A run's audit page for staff (served at ``/audit/runs/<run_id>/``, URL name ``audit:run``).

Only active staff with ``conversations.view_run`` (superusers, the auditor group) may open it;
anyone else gets 404, as for ids that do not exist. Opening another user's run is itself recorded
(``staff.view``). The audit log export stays in :mod:`audit.views`.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.access import require_staff_perm
from audit.log import record
from connections.selectors import endpoint_summary
from core.redact import mask_secrets

from . import context as ctx
from .models import Run, Session, Step, StepKind


def _pretty(value) -> str:
    return json.dumps(mask_secrets(value), cls=DjangoJSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)


def _exact_request(run: Run, step: Step) -> dict:
    """What a model call sent, rebuilt and checked by :func:`conversations.context.verify`.

    Returns ``{"body", "verified", "sha256", "error"}`` (plus ``"json"``, the pretty body, when
    rebuilt); ``body`` is the request (API keys masked) with the rebuilt ``messages``; ``verified``
    is None when the step stored no digest.
    """
    request = step.request or {}
    checked = ctx.verify(run, request)
    exact = {"body": None, "verified": checked["verified"], "sha256": checked["sha256"], "error": checked["error"]}
    if checked["messages"] is None:
        return exact
    body = {"model": request.get("model", run.model), "messages": checked["messages"], **(request.get("params") or {})}
    if "stream" in request:
        body["stream"] = request["stream"]
    if request.get("tools"):
        body["tools"] = request["tools"]
    exact["body"] = mask_secrets(body)
    exact["json"] = _pretty(exact["body"])
    return exact


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
            "exact": _exact_request(run, step) if step.kind == StepKind.LLM_CALL else None,
        }
    roots = []
    for step in steps:
        parent = nodes.get(step.parent_step_id)
        (parent["children"] if parent else roots).append(nodes[step.pk])
    return roots


@require_GET
def run_audit(request: HttpRequest, run_id) -> HttpResponse:
    """A run's audit page: place in the tree, the endpoint its model calls went to (connection, URL;
    the key masked), the step trace with timings, exact requests, usage."""
    require_staff_perm(request, "conversations.view_run")
    run = Run.objects.select_related("session__owner", "parent_run", "agent", "connection").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    last_call = (run.steps.filter(kind=StepKind.LLM_CALL).order_by("-started_at", "-id")
                 .values_list("request", flat=True).first())
    context = {
        **admin.site.each_context(request),
        "title": f"Run {run.pk}",
        "run": run,
        "session": run.session,
        "path": list(Run.objects.ancestor_of(run).order_by("depth").only("id", "depth", "status", "session_id")),
        "siblings": list(Run.objects.sibling_of(run, inclusive=False).order_by("created_at")),
        "children": list(Run.objects.children_of(run).order_by("created_at")),
        "forks": list(Session.objects.filter(forked_from_run=run).select_related("owner")),
        "messages_of_run": list(run.messages.order_by("position")),
        "steps": _step_tree(run),
        "params_json": _pretty(run.params),
        "endpoint": endpoint_summary(run.connection, last_call),
        "ttft": run.time_to_first_token_seconds(),
        "latency": run.latency_seconds(),
    }
    if run.session.owner_id != request.user.pk:
        record("staff.view", target=run, details={"owner_id": run.session.owner_id, "page": "audit.run"})
    return render(request, "conversations/run_audit.html", context)
