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
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import ArborError, Forbidden
from core.refusals import answers_refusals

from . import services
from .forms import AgentForm, SettingsForm
from .models import Agent
from .selectors import (
    agents_for,
    branch_settings_for,
    find_agent,
    get_agent_for,
    get_compaction_for,
    get_run_for,
    next_context,
    pin_of,
    pins_on_path,
    replaced_messages,
)


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
@answers_refusals(back="agents:detail")
def duplicate(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = get_agent_for(request.user, agent_id)
    copy = services.agent_duplicate(user=request.user, agent=agent)
    flash.success(request, f"Made “{copy.name}”, your own copy.")
    return redirect("agents:detail", agent_id=copy.pk)


@require_POST
def delete(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = get_agent_for(request.user, agent_id)
    services.agent_delete(user=request.user, agent=agent)
    flash.info(request, f"Deleted “{agent.name}”. Its runs keep their model and memory id.")
    return redirect("agents:index")


# --- pins and compaction, from the chat ---------------------------------------------------------

def _back(request, fallback: str) -> HttpResponse:
    target = request.POST.get("next") or ""
    return redirect(target if target.startswith("/") and not target.startswith("//") else fallback)


@require_POST
@answers_refusals(back=lambda request, run_id: _back(request, reverse("chatmemory:pinned", args=[run_id])).url)
def pin_toggle(request: HttpRequest, run_id) -> HttpResponse:
    """Pin the turn (or the message ``message_id``); pinned already: unpin it."""
    run = get_run_for(request.user, run_id)
    raw = request.POST.get("message_id", "").strip()
    message_id = int(raw) if raw.isdigit() else (raw or None)
    existing = None if isinstance(message_id, str) else pin_of(run, message_id)
    if existing is not None:
        services.pin_delete(pin=existing)
        flash.info(request, f"Unpinned turn {run.depth + 1}.")
        return _back(request, reverse("chatmemory:pinned", args=[run.pk]))
    services.pin_create(user=request.user, run=run, message_id=message_id)
    flash.success(request, f"Pinned turn {run.depth + 1}: later contexts on this branch send it verbatim.")
    return _back(request, reverse("chatmemory:pinned", args=[run.pk]))


@require_GET
def pinned(request: HttpRequest, run_id) -> HttpResponse:
    """The Pinned list of the branch ending at this run."""
    run = get_run_for(request.user, run_id)
    return render(request, "memory/pinned.html", {"run": run, "pins": list(pins_on_path(run))})


@require_http_methods(["GET", "POST"])
def compaction_detail(request: HttpRequest, compaction_id: int) -> HttpResponse:
    """Expand: the summary and the turns it replaced. POST: save an edited summary (a new version)."""
    compaction = get_compaction_for(request.user, compaction_id)
    status, error = 200, ""
    if request.method == "POST":
        try:
            services.summary_edit(user=request.user, compaction=compaction, text=request.POST.get("summary", ""))
        except ArborError as exc:
            status, error = exc.status, exc.message
        else:
            flash.success(request, "Summary saved as a new version: later contexts send it.")
            return redirect("chatmemory:compaction", compaction_id=compaction.pk)
    return render(request, "memory/compaction.html", {
        "c": compaction, "replaced": replaced_messages(compaction), "error": error,
        "draft": request.POST.get("summary") if error else compaction.summary,
    }, status=status)


@require_POST
@answers_refusals(back="chatmemory:compaction")
def compaction_undo(request: HttpRequest, compaction_id: int) -> HttpResponse:
    compaction = get_compaction_for(request.user, compaction_id)
    _, note = services.compaction_undo(user=request.user, compaction=compaction)
    flash.info(request, note)
    return redirect("chatmemory:compaction", compaction_id=compaction.pk)


@require_POST
@answers_refusals(back=lambda request, run_id: _back(request, reverse("chatmemory:pinned", args=[run_id])).url)
def compact(request: HttpRequest, run_id) -> HttpResponse:
    """Compact now: a background compaction of the branch ending at this run."""
    run = get_run_for(request.user, run_id)
    compaction = services.compact_now(user=request.user, run=run)
    flash.info(request, "Compacting in the background; the marker shows the result.")
    return _back(request, reverse("chatmemory:compaction", args=[compaction.pk]))


def _meter(run, agent, system_prompt: str) -> tuple[list[dict], str, str]:
    """The token meter of the next context below ``run`` with ``agent`` (None: the composer's, as on
    ``run``) and ``system_prompt`` (empty: the agent's): built by the engine's context builder and
    counted with the endpoint's token counter. Returns ``(rows, counted_with, error)``."""
    built = next_context(run, agent=agent if agent is not None else ..., system_override=system_prompt or None)
    return [{"part": k, "tokens": v} for k, v in built["totals"].items()], built["counted_with"], built["error"]


@require_http_methods(["GET", "POST"])
def chat_settings(request: HttpRequest, run_id) -> HttpResponse:
    """The chat settings panel of the branch ending at this run: GET the form with the token meter
    of the next context under the settings in force, part by part (the engine's build, counted with
    the endpoint's token counter); POST ``preview``: the same meter for the settings typed, nothing
    saved; POST: save them from the next turn on (nothing written on refusal)."""
    run = get_run_for(request.user, run_id)
    current = branch_settings_for(run)
    status, error, note, meter = 200, "", "The next context with the settings in force", None
    if request.method == "POST":
        form = SettingsForm(request.POST, user=request.user, saved=current)
        if not form.is_valid():
            status = 400
        elif "preview" in request.POST:
            data = form.data_for_service()
            meter = _meter(run, find_agent(data.get("agent_id")), data.get("system_prompt") or "")
            note = "Preview, not saved: the next context with the settings typed"
        else:
            try:
                services.branch_settings_save(user=request.user, run=run, data=form.data_for_service())
            except ArborError as exc:
                status, error = exc.status, exc.message
            else:
                flash.success(request, "Settings saved: the next turn on this branch uses them.")
                return redirect("chatmemory:settings", run_id=run.pk)
    else:
        form = SettingsForm(user=request.user, saved=current)
    in_force = (current.agent, current.system_prompt) if current else (None, "")
    totals, counted, overflow = meter or _meter(run, *in_force)
    return render(request, "memory/settings.html", {
        "run": run, "form": form, "current": current, "error": error, "totals": totals, "overflow": overflow,
        "note": f"{note}: built as the engine builds it, counted by the endpoint's token counter ({counted}).",
        "total": sum(t["tokens"] for t in totals) or 1, "sum": sum(t["tokens"] for t in totals),
    }, status=status)
