"""“What the model saw”: a turn's owner reads exactly what its last model call sent — the same
data as ``GET /api/runs/{id}/context`` (:func:`conversations.context_spec.model_saw`), with each
message's part and tokens, the SHA-256 check and what the path holds that the model did not see."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import context_spec as ctx
from .selectors import get_run_for, runs

PART_NAMES = {"system": "System prompt", "summary": "Summary", "pin": "Pinned", "history": "Window",
              "tool": "Tool traffic", "input": "This turn", "tail": "Nested agent's prompt", "primer": "Reply primer"}


@require_GET
def run_context(request: HttpRequest, run_id) -> HttpResponse:
    """The page; another user's run is 404. Before the first model call: 409 with a sentence."""
    run = get_run_for(request.user, run_id)
    step = runs.last_model_call(run)
    if step is None:
        return render(request, "memory/run_context.html", {"run": run, "missing": True}, status=409)
    saw = ctx.model_saw(run, step)
    rows = []
    for index, message in enumerate(saw["messages"] or []):
        part = saw["parts"][index] if saw["parts"] else None
        rows.append({"message": message, "part": part["part"] if part else "",
                     "tokens": part["tokens"] if part else None,
                     "label": PART_NAMES.get(part["part"], part["part"]) if part else ""})
    totals = [{"part": k, "label": PART_NAMES.get(k, k), "tokens": v} for k, v in (saw["totals"] or {}).items()]
    exact = json.dumps(saw["messages"], ensure_ascii=False, indent=2) if saw["messages"] is not None else ""
    return render(request, "memory/run_context.html", {
        "run": run, "saw": saw, "rows": rows, "totals": totals, "exact": exact,
    })
