"""Fixtures of the archive tests: the fixture files and a helper that imports one for ``user``."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def import_file(user):
    """``import_file(path, format="auto", **kwargs)`` → the ImportReport of importing it for ``user``."""
    from archive import services

    def run(path, format: str = "auto", owner=None, **kwargs):
        return services.import_archive(path=path, owner=owner or user, format=format, **kwargs)

    return run


def tree_signature(session) -> list:
    """The session's tree as nested, id-free data: for each root run (in creation order) its
    messages ``(role, content, name, tool_calls, tool_call_id)``, model, params, status, usage,
    and its children in the same form. Two sessions with equal signatures have the same tree."""
    from conversations.models import Message, Run

    runs = list(Run.objects.filter(session=session).order_by("depth", "created_at", "id"))
    messages: dict = {}
    for m in Message.objects.filter(run__session=session).order_by("position"):
        messages.setdefault(m.run_id, []).append((m.role, m.content, m.name, m.tool_calls, m.tool_call_id))
    children: dict = {}
    for run in runs:
        children.setdefault(run.parent_run_id, []).append(run)

    def node(run) -> dict:
        return {
            "messages": messages.get(run.pk, []), "model": run.model, "params": run.params, "status": run.status,
            "usage": (run.prompt_tokens, run.completion_tokens), "finish_reason": run.finish_reason,
            "children": sorted((node(c) for c in children.get(run.pk, [])), key=repr),
        }

    return sorted((node(r) for r in children.get(None, [])), key=repr)
