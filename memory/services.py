"""Writes for agents (the JSON API's; the admin saves through its ModelForm): create, update,
delete. Validation is the admin's — :meth:`memory.models.Agent.full_clean`, so
:meth:`~memory.models.Agent.clean` checks the compaction policy, parameters, tools, connection and
model — after the connection is looked up for the caller (another user's is 404). Nothing is
written when anything is refused.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from connections.selectors import get_connection_for
from core.errors import Forbidden, InvalidInput

from .models import Agent, Pin

FIELDS = ("name", "connection_id", "model", "system_prompt", "params", "memory_id", "memory_window_size",
          "context_window", "reserved_output_tokens", "compaction", "tools")


def may_share(user) -> bool:
    """May make and change shared agents: active staff with the ``change_agent`` permission (as in the admin)."""
    return bool(user.is_active and user.is_staff and user.has_perm("memory.change_agent"))


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{'' if field == '__all__' else field + ': '}{' '.join(errors)}"
                         for field, errors in exc.message_dict.items())
    return "; ".join(exc.messages)


def _apply(*, user, agent: Agent, data: dict) -> None:
    unknown = set(data) - {*FIELDS, "shared"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    if data.get("shared") is not None and bool(data["shared"]) != (agent.owner_id is None):
        if not may_share(user):
            raise Forbidden("Only an administrator can share an agent (or stop sharing it).")
        agent.owner = None if data["shared"] else user
    if "connection_id" in data:
        connection_id = data["connection_id"]
        agent.connection = get_connection_for(user, connection_id) if connection_id is not None else None
    for field in FIELDS:
        if field in data and field != "connection_id":
            value = data[field]
            if value is None and field in ("name", "model", "system_prompt", "memory_id"):
                value = ""
            if value is None and field in ("params", "compaction"):
                value = {}
            setattr(agent, field, [] if value is None and field == "tools" else value)


def _save(agent: Agent) -> Agent:
    try:
        agent.full_clean()
    except ValidationError as exc:
        raise InvalidInput(_messages(exc)) from None
    agent.save()
    return agent


@transaction.atomic
def agent_create(*, user, data: dict) -> Agent:
    """A new agent owned by ``user`` (``shared``: by nobody, administrators only) from ``data``
    (the fields of :data:`FIELDS`). Raises InvalidInput (anything the admin would refuse, a name
    already used), NotFound (a connection ``user`` may not use) and Forbidden."""
    agent = Agent(owner=user)
    _apply(user=user, agent=agent, data=data)
    return _save(agent)


@transaction.atomic
def agent_update(*, user, agent: Agent, data: dict) -> Agent:
    """Change the fields given in ``data``; the others stay. A shared agent takes an administrator.
    Raises as :func:`agent_create`."""
    if agent.owner_id is None and not may_share(user):
        raise Forbidden("This agent is shared; only an administrator can change it.")
    _apply(user=user, agent=agent, data=data)
    return _save(agent)


@transaction.atomic
def agent_duplicate(*, user, agent: Agent) -> Agent:
    """A copy of ``agent`` (one of ``user``'s or a shared one) owned by ``user``, named “<name> (copy)”
    (“(copy 2)”, … when taken). Every setting is copied; the copy is validated like a new agent."""
    taken = set(Agent.objects.filter(owner=user, name__startswith=agent.name[:80]).values_list("name", flat=True))
    base = f"{agent.name[:80]} (copy"
    name = next(f"{base}{'' if n == 1 else f' {n}'})" for n in range(1, len(taken) + 2)
                if f"{base}{'' if n == 1 else f' {n}'})" not in taken)
    copy = Agent(owner=user, name=name)
    for field in FIELDS:
        if field != "name":
            setattr(copy, field, getattr(agent, field))
    return _save(copy)


@transaction.atomic
def agent_delete(*, user, agent: Agent) -> None:
    """Delete an agent; its runs keep their model, connection and memory id (their ``agent`` is emptied)."""
    if agent.owner_id is None and not may_share(user):
        raise Forbidden("This agent is shared; only an administrator can delete it.")
    agent.delete()


# --- pins ---------------------------------------------------------------------------------------

def pin_create(*, user, run, message_id: int | None = None) -> tuple[Pin, bool]:
    """Pin the turn ``run`` (a run of ``user``'s, already looked up), or one of its messages.
    Returns ``(pin, created)``: pinning what is pinned already returns the existing pin. Raises
    InvalidInput for a message that is not the run's (nothing written)."""
    message = None
    if message_id is not None:
        message = run.messages.filter(pk=message_id).first() if isinstance(message_id, int) else None
        if message is None:
            raise InvalidInput(f"message_id: {message_id!r} is not a message of this turn.")
    with transaction.atomic():
        existing = Pin.objects.filter(run=run, message=message).first()
        if existing is not None:
            return existing, False
        return Pin.objects.create(run=run, message=message, created_by=user), True


def pin_delete(*, pin: Pin) -> None:
    """Unpin: later contexts may compact or cut that message again; earlier ones are unchanged."""
    pin.delete()
