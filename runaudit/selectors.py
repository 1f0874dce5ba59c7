"""The reads of the run audit page: the run with its place in the tree, its step trace, and the
exact request each model call sent (rebuilt and checked by :func:`conversations.context_spec.verify`)."""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404

from conversations import context_spec as ctx
from conversations.models import Run, Session, Step, StepKind
from core.redact import mask_secrets


def pretty(value) -> str:
    """``value`` as indented JSON with secrets masked (:func:`core.redact.mask_secrets`)."""
    return json.dumps(mask_secrets(value), cls=DjangoJSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)


def _exact_request(run: Run, step: Step) -> dict:
    """What a model call sent, rebuilt and checked by :func:`conversations.context_spec.verify`.

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
    exact["json"] = pretty(exact["body"])
    return exact


def step_tree(run: Run) -> list[dict]:
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
            "request_json": pretty(step.request) if step.request else "",
            "response_json": pretty(step.response) if step.response else "",
            "error_json": pretty(step.error) if step.error else "",
            "exact": _exact_request(run, step) if step.kind == StepKind.LLM_CALL else None,
        }
    roots = []
    for step in steps:
        parent = nodes.get(step.parent_step_id)
        (parent["children"] if parent else roots).append(nodes[step.pk])
    return roots


def get_run_for_audit(run_id) -> Run:
    """The run with its session's owner, parent run, agent and connection; Http404 when there is none."""
    run = Run.objects.select_related("session__owner", "parent_run", "agent", "connection").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


def last_call_request(run: Run) -> dict | None:
    """The stored request of the run's latest model call (None when it made none)."""
    return (run.steps.filter(kind=StepKind.LLM_CALL).order_by("-started_at", "-id")
            .values_list("request", flat=True).first())


def tree_around(run: Run) -> dict:
    """The run's place in the tree: ``path`` (root to run), ``siblings``, ``children``, ``forks``
    (sessions forked from it) and ``messages_of_run`` (its messages in order)."""
    return {
        "path": list(Run.objects.ancestor_of(run).order_by("depth").only("id", "depth", "status", "session_id")),
        "siblings": list(Run.objects.sibling_of(run, inclusive=False).order_by("created_at")),
        "children": list(Run.objects.children_of(run).order_by("created_at")),
        "forks": list(Session.objects.filter(forked_from_run=run).select_related("owner")),
        "messages_of_run": list(run.messages.order_by("position")),
    }
