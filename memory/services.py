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
from core.text import clean_json_strings, clean_text

from .models import Agent

# Text fields: (max length, multi-line); every one goes through core.text.clean_text.
TEXT_FIELDS = {"name": (100, False), "model": (200, False), "system_prompt": (100_000, True),
               "memory_id": (100, False)}
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
            if field in TEXT_FIELDS:
                limit, multiline = TEXT_FIELDS[field]
                value = clean_text(value, field=field, max_length=limit, required=False, multiline=multiline,
                                   strip=not multiline)
            elif field in ("params", "compaction", "tools"):
                value = clean_json_strings(value, field=field)
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
def agent_delete(*, user, agent: Agent) -> None:
    """Delete an agent; its runs keep their model, connection and memory id (their ``agent`` is emptied)."""
    if agent.owner_id is None and not may_share(user):
        raise Forbidden("This agent is shared; only an administrator can delete it.")
    agent.delete()
