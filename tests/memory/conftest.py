"""Fixtures for the memory tests: agents and branches of finished runs with memory ids."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from conversations.models import Message, Role, Run, RunStatus
from memory.models import Agent


@pytest.fixture
def make_agent(user):
    def make(name: str | None = None, **fields) -> Agent:
        return Agent.objects.create(owner=user, name=name or f"agent-{uuid.uuid4().hex[:6]}", **fields)

    return make


def add_run(session, parent: Run | None, user_text: str, answer: str | None = "ok", *, agent: Agent | None = None,
            memory_id: str | None = None, tool_traffic: list[dict] | None = None,
            status: str = RunStatus.SUCCEEDED) -> Run:
    """A finished run under ``parent``: its input, optional tool traffic (OpenAI-format dicts), answer."""
    run = Run.objects.create(
        session=session, parent_run=parent, depth=0 if parent is None else parent.depth + 1, status=status,
        model="fake-model", agent=agent, memory_id=memory_id or (agent.memory_id if agent else "default"),
        finished_at=timezone.now(),
    )
    Message.objects.create(run=run, position=0, role=Role.USER, content=user_text)
    position = 1
    for data in tool_traffic or []:
        Message.objects.create(run=run, position=position, role=data["role"], content=data.get("content") or "",
                               tool_calls=data.get("tool_calls"), tool_call_id=data.get("tool_call_id", ""),
                               name=data.get("name", ""))
        position += 1
    if answer is not None:
        Message.objects.create(run=run, position=position, role=Role.ASSISTANT, content=answer)
    return run


def add_chain(session, parent: Run | None, turns: int, *, prefix: str = "turn", words: int = 0, **kwargs) -> list[Run]:
    runs = []
    for i in range(turns):
        filler = (" " + " ".join(["filler"] * words)) if words else ""
        parent = add_run(session, parent, f"{prefix} {i} question{filler}", f"{prefix} {i} answer{filler}", **kwargs)
        runs.append(parent)
    return runs


def new_input(session, parent: Run | None, text: str = "new input", *, agent: Agent | None = None,
              memory_id: str | None = None) -> Run:
    """A queued run (as run_start leaves it) with only its input."""
    return add_run(session, parent, text, None, agent=agent, memory_id=memory_id, status=RunStatus.QUEUED)


def estimate_counter():
    """A token counter that never asks a server (estimates only): deterministic budgets in tests."""
    from core.tokens import TokenCounter

    counter = TokenCounter(base_url="http://127.0.0.1:9/v1")
    counter._mode = "estimate"
    return counter


def built_for(run, **kwargs):
    """``engine.context.build_context`` with the estimating counter; the stored spec must rebuild
    exactly the messages that were built."""
    from conversations import context_spec as ctx
    from engine.context import build_context

    built = build_context(run, counter=estimate_counter(), **kwargs)
    assert ctx.rebuild(run, built.spec.to_json()) == built.messages, "the stored spec must rebuild the same messages"
    return built


def contents(built) -> list[str]:
    return [m["content"] for m in built.messages]
