"""Reads of agents with ownership: a user sees their own agents and the shared ones; another
user's agent answers the same 404 as an id that does not exist."""

from __future__ import annotations

import uuid

from django.db.models import F, Q

from connections.selectors import object_id
from core.errors import NotFound

from .models import Agent, BranchSettings, Compaction, Pin


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


# Memory sits below conversations (import-linter's "apps" contract): runs and messages are reached
# through this app's own foreign keys to them, never by importing conversations.
def run_model():
    """The Run model, through this app's foreign key to it."""
    return Pin._meta.get_field("run").related_model


def get_run_for(user, run_id):
    """A run of one of ``user``'s sessions; NotFound otherwise (also for a malformed id)."""
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound(f"No run with id {str(run_id)[:40]!r}.") from None
    run = run_model().objects.select_related("session").filter(pk=pk, session__owner=user).first()
    if run is None:
        raise NotFound(f"No run with id {run_id}.")
    return run


def pins_on_path(run):
    """The pins that hold for ``run``: those on it and on its ancestors (per branch), oldest turn
    first, with their run and message joined."""
    ancestors = run_model().objects.ancestor_of(run, inclusive=True)
    return (Pin.objects.filter(run__in=ancestors).select_related("run", "message")
            .order_by("run__depth", F("message__position").asc(nulls_first=True), "id"))


def get_pin_for(user, pin_id) -> Pin:
    """A pin on a run of one of ``user``'s sessions; NotFound otherwise."""
    pin = (Pin.objects.select_related("run", "message").filter(pk=object_id(pin_id, "pin"), run__session__owner=user)
           .first())
    if pin is None:
        raise NotFound(f"No pin with id {pin_id}.")
    return pin


def get_compaction_for(user, compaction_id) -> Compaction:
    """A compaction of a branch of one of ``user``'s sessions; NotFound otherwise."""
    compaction = (Compaction.objects.select_related("run").filter(pk=object_id(compaction_id, "compaction"),
                                                                  run__session__owner=user).first())
    if compaction is None:
        raise NotFound(f"No compaction with id {compaction_id}.")
    return compaction


def replaced_messages(compaction: Compaction) -> list:
    """The messages a compaction stands for (summarised, cut or truncated), in path order."""
    message_model = Pin._meta.get_field("message").related_model
    return list(message_model.objects.filter(pk__in=compaction.replaced_message_ids).select_related("run")
                .order_by("run__depth", "position"))


def branch_settings_for(parent) -> BranchSettings | None:
    """The chat settings a run started below ``parent`` (a run or its id; None: a new root) takes:
    the newest saved on ``parent`` or its nearest ancestor that has any. One query."""
    if parent is None:
        return None
    ancestors = run_model().objects.ancestor_of(parent, inclusive=True)
    return (BranchSettings.objects.filter(run__in=ancestors).select_related("agent")
            .order_by("-run__depth", "-id").first())


def pin_of(run, message_id) -> Pin | None:
    """The pin of the turn ``run`` (``message_id`` None) or of its message ``message_id``; None when
    there is none."""
    return Pin.objects.filter(run=run, message_id=message_id).first()


def turn_input(run):
    """The first message of ``run`` (its input), or None."""
    return run.messages.order_by("position").first()


def find_agent(agent_id) -> Agent | None:
    """Agent ``agent_id`` (already checked usable by the caller's form), or None (no id, no agent)."""
    return Agent.objects.filter(pk=agent_id).first() if agent_id else None


# The engine builds contexts and sits above this app: it lends its builder at start-up
# (engine.apps.EngineConfig.ready), so the settings preview and Undo count the real next context.
_next_context_builder = None


def register_next_context(builder) -> None:
    """Set the function :func:`next_context` calls (:func:`engine.context.next_context`)."""
    global _next_context_builder
    _next_context_builder = builder


def next_context(run, *, agent=..., system_override: str | None = None) -> dict:
    """The next context below ``run``, built and counted as the engine will (``agent``: default
    ``run``'s; ``system_override``: empty, the agent's system prompt). Returns ``{"totals": {part:
    tokens}, "tokens", "needed", "usable_window", "counted_with", "not_seen", "error"}`` (see
    :func:`engine.context.next_context`: ``error`` says why when the fixed parts do not fit)."""
    if _next_context_builder is None:
        raise RuntimeError("the engine app is not installed: no context builder to preview with")
    return _next_context_builder(run, agent=agent, system_override=system_override)
