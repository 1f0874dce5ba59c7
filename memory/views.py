"""The Agents page: every user lists, creates, edits, duplicates and deletes their own agents; the
shared agents administrators made are listed to use (and to duplicate), not to edit.

Function views over :mod:`memory.services` (the API's writes, so validation is one): a refused
form comes back with the reason next to it and status 400, and nothing is written. Another user's
agent is 404 (:mod:`memory.selectors`); changing a shared one without being an administrator is 403.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import ArborError, Forbidden

from . import services
from .forms import AgentForm
from .models import Agent
from .selectors import agents_for, get_agent_for


def _editable(user, agent: Agent) -> bool:
    return agent.owner_id == user.pk or (agent.owner_id is None and services.may_share(user))


def _index(request, form: AgentForm | None = None, status: int = 200) -> HttpResponse:
    agents = list(agents_for(request.user))
    for agent in agents:
        agent.editable = _editable(request.user, agent)
    context = {"own": [a for a in agents if a.owner_id is not None],
               "shared": [a for a in agents if a.owner_id is None], "form": form or AgentForm(user=request.user)}
    return render(request, "memory/agents.html", context, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The caller's agents, the shared ones, and the form that makes a new one."""
    return _index(request)


def _save(request, form: AgentForm, agent: Agent | None) -> Agent | None:
    """Validate and write through the service; on refusal the reason goes on the form, nothing is written."""
    if not form.is_valid():
        return None
    try:
        if agent is None:
            return services.agent_create(user=request.user, data=form.data_for_service())
        return services.agent_update(user=request.user, agent=agent, data=form.data_for_service())
    except Forbidden:
        raise
    except ArborError as exc:
        form.add_error(None, exc.message)
        return None


@require_POST
def create(request: HttpRequest) -> HttpResponse:
    form = AgentForm(request.POST, user=request.user)
    saved = _save(request, form, None)
    if saved is None:
        return _index(request, form, status=400)
    flash.success(request, f"Created the agent “{saved.name}”. Pick it in a chat's agent menu.")
    return redirect("agents:detail", agent_id=saved.pk)


@require_http_methods(["GET", "POST"])
def detail(request: HttpRequest, agent_id: int) -> HttpResponse:
    """GET: the agent and (if the caller may change it) its form. POST: save the change."""
    agent = get_agent_for(request.user, agent_id)
    editable = _editable(request.user, agent)
    if request.method == "POST":
        if not editable:
            raise Forbidden("This agent is shared; only an administrator can change it. Duplicate it to make your own.")
        form = AgentForm(request.POST, user=request.user)
        if _save(request, form, agent) is not None:
            flash.success(request, "Saved. The change applies from the next turn.")
            return redirect("agents:detail", agent_id=agent.pk)
        agent.refresh_from_db()
        status = 400
    else:
        form, status = AgentForm(user=request.user, agent=agent), 200
    return render(request, "memory/agent_detail.html", {"agent": agent, "form": form, "editable": editable},
                  status=status)


@require_POST
def duplicate(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = get_agent_for(request.user, agent_id)
    try:
        copy = services.agent_duplicate(user=request.user, agent=agent)
    except ArborError as exc:
        flash.error(request, exc.message)
        return redirect("agents:detail", agent_id=agent.pk)
    flash.success(request, f"Made “{copy.name}”, your own copy.")
    return redirect("agents:detail", agent_id=copy.pk)


@require_POST
def delete(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = get_agent_for(request.user, agent_id)
    services.agent_delete(user=request.user, agent=agent)
    flash.info(request, f"Deleted “{agent.name}”. Its runs keep their model and memory id.")
    return redirect("agents:index")
