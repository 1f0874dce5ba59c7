"""What the chat's forms send for fan-out, fuse and merge, checked into service arguments."""

from __future__ import annotations

import uuid

from conversations.selectors import pages
from core.errors import InvalidInput

from .services import Variant


def variant_from(user, choice: str) -> Variant:
    """One pick of the composer's multi-select: ``""`` (the default), an agent id, or
    ``model:<id>`` (a connection's model). Raises InvalidInput for anything else."""
    choice = (choice or "").strip()
    if not choice:
        return Variant()
    if choice.startswith("model:"):
        model_id = choice.removeprefix("model:")
        model = pages.picked_model(user, int(model_id)) if model_id.isdigit() else None
        if model is None:
            raise InvalidInput("Pick your connections' models, your agents or the default.")
        return Variant(model=model.name, connection=model.connection, has_connection=True)
    agent = pages.picked_agent(user, int(choice)) if choice.isdigit() else None
    if agent is None:
        raise InvalidInput("Pick your agents, your connections' models or the default.")
    return Variant(agent=agent)


def run_ids(values, field: str) -> list[uuid.UUID]:
    """Run ids from a form's repeated field, in order; raises InvalidInput naming ``field``."""
    try:
        return [uuid.UUID(str(value)) for value in values]
    except ValueError:
        raise InvalidInput(f"{field} must be run ids.") from None


def optional_agent(user, value: str):
    """An agent picked by id in a form (empty: None). Raises InvalidInput for one not pickable."""
    value = (value or "").strip()
    if not value:
        return None
    agent = pages.picked_agent(user, int(value)) if value.isdigit() else None
    if agent is None:
        raise InvalidInput("Pick one of your agents.")
    return agent
