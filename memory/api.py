"""The JSON API of agents (a django-ninja router, mounted by :mod:`config.api`): list, create, read,
update, delete, with their connection and model, memory settings, compaction policy and tools.

Validated as in the admin (:meth:`memory.models.Agent.clean`: the compaction policy, parameters,
tools, connection and model), and nothing is written when anything is refused (400 with the
field). The caller sees their own agents and the shared ones; another user's agent, or a
connection the caller may not use, is 404. Shared agents are changed by administrators only (403).
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from core.api_kit import BODY, MAX_PAGE_SIZE, Pages, answers
from core.errors import Conflict, InvalidInput

from . import services
from .models import DEFAULT_MEMORY_ID, Agent, Compaction, Pin
from .selectors import (
    agents_for,
    branch_settings_for,
    get_agent_for,
    get_compaction_for,
    get_pin_for,
    get_run_for,
    pins_on_path,
    replaced_messages,
    turn_input,
)

router = Router(tags=["agents"])


class ConnectionRef(Schema):
    id: int
    name: str


class AgentOut(Schema):
    id: int
    name: str
    shared: bool
    connection: ConnectionRef | None = Field(description="None: the default connection (OPENAI_BASE_URL).")
    model: str = Field(description="Empty: ARBOR_MODEL.")
    model_label: str = Field(description="connection · model, as pickers show it.")
    system_prompt: str
    params: dict
    memory_id: str
    memory_window_size: int | None = Field(description="Newest N messages kept; 0 none; null all (within the budget).")
    context_window: int | None = Field(description="Tokens; null: the connection's figure for the model, else the "
                                                   "settings'.")
    reserved_output_tokens: int
    compaction: dict = Field(description="Compaction policy: enabled, threshold, target, strategies (memory.policy).")
    tools: list[str]
    created_at: datetime


class AgentIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    connection_id: int | None = None
    model: str = ""
    system_prompt: str = ""
    params: dict = Field(default_factory=dict)
    memory_id: str = DEFAULT_MEMORY_ID
    memory_window_size: int | None = None
    context_window: int | None = None
    reserved_output_tokens: int = 512
    compaction: dict = Field(default_factory=dict)
    tools: list[str] = Field(default_factory=list)
    shared: bool = Field(False, description="Every user may pick it (administrators only).")


class AgentPatch(Schema):
    """Only the fields sent change (``connection_id: null``: the default connection)."""

    name: str | None = Field(None, min_length=1, max_length=100)
    connection_id: int | None = None
    model: str | None = None
    system_prompt: str | None = None
    params: dict | None = None
    memory_id: str | None = None
    memory_window_size: int | None = None
    context_window: int | None = None
    reserved_output_tokens: int | None = None
    compaction: dict | None = None
    tools: list[str] | None = None
    shared: bool | None = None


def agent_out(agent: Agent) -> dict:
    connection = agent.connection if agent.connection_id is not None else None
    return {
        "id": agent.pk, "name": agent.name, "shared": agent.owner_id is None,
        "connection": {"id": connection.pk, "name": connection.name} if connection is not None else None,
        "model": agent.model, "model_label": agent.model_label, "system_prompt": agent.system_prompt,
        "params": agent.params, "memory_id": agent.memory_id, "memory_window_size": agent.memory_window_size,
        "context_window": agent.context_window, "reserved_output_tokens": agent.reserved_output_tokens,
        "compaction": agent.compaction, "tools": agent.tools, "created_at": agent.created_at,
    }


@router.get("/agents", response=answers({200: list[AgentOut]}, 400, 404))
@paginate(Pages, page_size=50, max_page_size=MAX_PAGE_SIZE)
def list_agents(request):
    """The caller's agents and the shared ones, by name (not those comparisons made for variants)."""
    return [agent_out(a) for a in agents_for(request.auth)]


@router.post("/agents", response=answers({201: AgentOut}, *BODY, 403, 404))
def create_agent(request, payload: AgentIn):
    """Create an agent. 400 names the field the admin would refuse; 404 for a connection the caller may not use."""
    agent = services.agent_create(user=request.auth, data=payload.dict())
    return Status(201, agent_out(agent))


@router.get("/agents/{agent_id}", response=answers({200: AgentOut}, 404))
def get_agent(request, agent_id: str):
    return agent_out(get_agent_for(request.auth, agent_id))


@router.patch("/agents/{agent_id}", response=answers({200: AgentOut}, *BODY, 403, 404))
def update_agent(request, agent_id: str, payload: AgentPatch):
    agent = get_agent_for(request.auth, agent_id)
    return agent_out(services.agent_update(user=request.auth, agent=agent, data=payload.dict(exclude_unset=True)))


@router.post("/agents/{agent_id}/duplicate", response=answers({201: AgentOut}, 400, 404))
def duplicate_agent(request, agent_id: str):
    """A copy of one of the caller's agents or of a shared one, owned by the caller (“<name> (copy)”)."""
    agent = services.agent_duplicate(user=request.auth, agent=get_agent_for(request.auth, agent_id))
    return Status(201, agent_out(agent))


@router.delete("/agents/{agent_id}", response=answers({204: None}, 403, 404))
def delete_agent(request, agent_id: str):
    """Delete an agent; its runs stay (with their model, connection and memory id)."""
    services.agent_delete(user=request.auth, agent=get_agent_for(request.auth, agent_id))
    return Status(204, None)


# --- pins ---------------------------------------------------------------------------------------

class PinIn(Schema):
    message_id: int | None = Field(None, description="One message of the turn; omitted: the whole turn.")


class PinOut(Schema):
    id: int
    run_id: str
    message_id: int | None
    turn: int = Field(description="The pinned turn's number on its branch (1 = the root run).")
    role: str | None = Field(description="The pinned message's role; null for a whole turn.")
    excerpt: str = Field(description="The first 200 characters of the message (of the turn's input for a turn).")
    created_at: datetime


def pin_out(pin: Pin) -> dict:
    message = pin.message if pin.message_id is not None else turn_input(pin.run)
    return {"id": pin.pk, "run_id": str(pin.run_id), "message_id": pin.message_id, "turn": pin.run.depth + 1,
            "role": pin.message.role if pin.message_id is not None else None,
            "excerpt": (message.content if message is not None else "")[:200], "created_at": pin.created_at}


@router.get("/runs/{run_id}/pins", response=answers({200: list[PinOut]}, 404), tags=["pins"])
def list_pins(request, run_id: str):
    """The pins that hold for this run's context: on the run and on its ancestors (pins are per
    branch), oldest turn first."""
    return [pin_out(p) for p in pins_on_path(get_run_for(request.auth, run_id))]


@router.post("/runs/{run_id}/pins", response=answers({201: PinOut}, *BODY, 404, 409), tags=["pins"])
def create_pin(request, run_id: str, payload: PinIn = None):
    """Pin the turn (or one of its messages): every later context on a branch below it sends it
    verbatim. 400 for a message not of this turn, 409 when it is pinned already (nothing written)."""
    run = get_run_for(request.auth, run_id)
    pin, created = services.pin_create(user=request.auth, run=run, message_id=payload.message_id if payload else None)
    if not created:
        raise Conflict(f"That is pinned already (pin {pin.pk}).")
    return Status(201, pin_out(pin))


@router.delete("/pins/{pin_id}", response=answers({204: None}, 404), tags=["pins"])
def delete_pin(request, pin_id: str):
    services.pin_delete(pin=get_pin_for(request.auth, pin_id))
    return Status(204, None)


# --- compaction you can see and steer -----------------------------------------------------------

class ReplacedTurn(Schema):
    turn: int
    run_id: str
    message_id: int
    role: str
    content: str


class CompactionOut(Schema):
    id: int
    run_id: str
    memory_id: str
    status: str = Field(description="pending, running, ready, failed or undone.")
    turns: str = Field(description="“1–40”: the turns it stands for.")
    tokens_before: int
    tokens_after: int | None
    summary: str
    versions: int = Field(description="Number of earlier texts kept (edits).")
    model: str
    connection: str
    error: str = Field(description="Why it failed (the raw turns are sent meanwhile).")
    finished_at: datetime | None
    marker: str = Field(description="The chat's marker line.")
    replaced: list[ReplacedTurn] | None = Field(None, description="The messages it stands for (GET one only).")


class SummaryIn(Schema):
    summary: str = Field("", description="The new text (required: an empty one is refused with 400).")


class UndoOut(Schema):
    compaction: CompactionOut
    note: str


def compaction_out(c: Compaction, *, with_replaced: bool = False) -> dict:
    out = {
        "id": c.pk, "run_id": str(c.run_id), "memory_id": c.memory_id, "status": c.status,
        "turns": f"1–{c.last_turn}" if c.last_turn > 1 else "1", "tokens_before": c.tokens_before,
        "tokens_after": c.tokens_after, "summary": c.summary, "versions": len(c.versions or []), "model": c.model,
        "connection": c.summary_connection, "error": c.error, "finished_at": c.finished_at,
        "marker": c.marker,
    }
    if with_replaced:
        out["replaced"] = [{"turn": m.run.depth + 1, "run_id": str(m.run_id), "message_id": m.pk, "role": m.role,
                            "content": m.content} for m in replaced_messages(c)]
    return out


@router.get("/compactions/{compaction_id}", response=answers({200: CompactionOut}, 404), tags=["compaction"])
def get_compaction(request, compaction_id: str):
    """A compaction with its summary and the messages it stands for (“Expand”)."""
    return compaction_out(get_compaction_for(request.auth, compaction_id), with_replaced=True)


@router.post("/compactions/{compaction_id}/summary", response=answers({200: CompactionOut}, *BODY, 404, 409),
             tags=["compaction"])
def edit_summary(request, compaction_id: str, payload: SummaryIn):
    """Replace the summary (a new version; the old is kept); later contexts send the new text."""
    compaction = get_compaction_for(request.auth, compaction_id)
    return compaction_out(services.summary_edit(user=request.auth, compaction=compaction, text=payload.summary))


@router.post("/compactions/{compaction_id}/undo", response=answers({200: UndoOut}, 404, 409), tags=["compaction"])
def undo_compaction(request, compaction_id: str):
    """Later contexts send the raw turns; ``note`` says whether they fit, or by how many tokens not."""
    compaction, note = services.compaction_undo(user=request.auth,
                                                compaction=get_compaction_for(request.auth, compaction_id))
    return {"compaction": compaction_out(compaction), "note": note}


@router.post("/runs/{run_id}/compact", response=answers({202: CompactionOut}, 400, 404, 409), tags=["compaction"])
def compact_run(request, run_id: str):
    """Compact the branch ending at this run now, in the background, with its agent's strategies
    (202; follow it with GET /api/compactions/{id}). 409 when one is in progress on the branch or
    this turn is compacted already; 400 when the agent's stored policy is invalid."""
    run = get_run_for(request.auth, run_id)
    try:
        compaction = services.compact_now(user=request.auth, run=run)
    except ValidationError as exc:
        raise InvalidInput(f"compaction: {'; '.join(exc.messages)}") from None
    return Status(202, compaction_out(compaction))


# --- chat settings ------------------------------------------------------------------------------

class SettingsIn(Schema):
    agent_id: int | None = None
    system_prompt: str = ""
    params: dict = Field(default_factory=dict)
    compaction: dict = Field(default_factory=dict, description="A compaction policy; empty: the agent's.")


class SettingsOut(Schema):
    id: int | None = Field(description="null: no settings saved on this branch (the agent's and defaults apply).")
    run_id: str | None = Field(description="The turn they were saved on (they apply below it).")
    agent_id: int | None
    system_prompt: str
    params: dict
    compaction: dict
    created_at: datetime | None


def settings_out(saved) -> dict:
    if saved is None:
        return {"id": None, "run_id": None, "agent_id": None, "system_prompt": "", "params": {}, "compaction": {},
                "created_at": None}
    return {"id": saved.pk, "run_id": str(saved.run_id), "agent_id": saved.agent_id,
            "system_prompt": saved.system_prompt, "params": saved.params, "compaction": saved.compaction,
            "created_at": saved.created_at}


@router.get("/runs/{run_id}/settings", response=answers({200: SettingsOut}, 404), tags=["settings"])
def get_settings(request, run_id: str):
    """The chat settings the next turn below this run takes (saved on it or on its nearest ancestor)."""
    return settings_out(branch_settings_for(get_run_for(request.auth, run_id)))


@router.put("/runs/{run_id}/settings", response=answers({201: SettingsOut}, *BODY, 404), tags=["settings"])
def save_settings(request, run_id: str, payload: SettingsIn):
    """Save chat settings from this turn on: runs started below it take them (and record them);
    branches started above it keep theirs. 400 names the field; nothing is written then."""
    run = get_run_for(request.auth, run_id)
    return Status(201, settings_out(services.branch_settings_save(user=request.auth, run=run, data=payload.dict())))
