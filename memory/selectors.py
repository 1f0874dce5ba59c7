"""Reads of agents with ownership: a user sees their own agents and the shared ones; another
user's agent answers the same 404 as an id that does not exist."""

from __future__ import annotations

from django.db.models import Q

from connections.selectors import object_id
from core.errors import NotFound

from .models import Agent


def agents_for(user):
    """The agents ``user`` may use (own and shared, not those comparisons made), by name; the
    connection is joined."""
    return Agent.objects.pickable_by(user)


def get_agent_for(user, agent_id) -> Agent:
    """An agent of ``user``'s or a shared one (also one a comparison made for ``user``); NotFound otherwise."""
    pk = object_id(agent_id, "agent")
    agent = (Agent.objects.filter(Q(owner=user) | Q(owner__isnull=True)).select_related("connection")
             .filter(pk=pk).first())
    if agent is None:
        raise NotFound(f"No agent with id {agent_id}.")
    return agent
