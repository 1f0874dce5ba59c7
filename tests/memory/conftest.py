"""Fixtures for the memory tests: agents, and the context built with an estimating token counter
(branches of finished runs with memory ids: :func:`tests.support.factories.add_chain`)."""

from __future__ import annotations

import uuid

import pytest

from memory.models import Agent
from tests.support.factories import AgentFactory


@pytest.fixture
def make_agent(user):
    def make(name: str | None = None, **fields) -> Agent:
        return AgentFactory(owner=user, name=name or f"agent-{uuid.uuid4().hex[:6]}", **fields)

    return make


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
