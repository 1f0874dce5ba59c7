"""A run's audit page for staff (served at ``/audit/runs/<run_id>/``, URL name ``audit:run``).

Only active staff with ``conversations.view_run`` (superusers, the auditor group) may open it;
anyone else gets 404, as for ids that do not exist. Opening another user's run is itself recorded
(``staff.view``). The audit log export stays in :mod:`audit.views`.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.access import require_staff_perm
from audit.log import record
from connections.selectors import endpoint_summary

from .selectors import get_run_for_audit, last_call_request, pretty, step_tree, tree_around


@require_GET
def run_audit(request: HttpRequest, run_id) -> HttpResponse:
    """A run's audit page: place in the tree, the endpoint its model calls went to (connection, URL;
    the key masked), the step trace with timings, exact requests, usage."""
    require_staff_perm(request, "conversations.view_run")
    run = get_run_for_audit(run_id)
    context = {
        **admin.site.each_context(request),
        "title": f"Run {run.pk}",
        "run": run,
        "session": run.session,
        **tree_around(run),
        "steps": step_tree(run),
        "params_json": pretty(run.params),
        "endpoint": endpoint_summary(run.connection, last_call_request(run)),
        "ttft": run.time_to_first_token_seconds(),
        "latency": run.latency_seconds(),
    }
    if run.session.owner_id != request.user.pk:
        record("staff.view", target=run, details={"owner_id": run.session.owner_id, "page": "audit.run"})
    return render(request, "conversations/run_audit.html", context)
