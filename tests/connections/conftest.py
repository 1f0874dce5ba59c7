"""Fixtures for model connections: a second scripted model server (its own port and model list),
connections to either server, a superuser."""

from __future__ import annotations

import pytest

from tests.llm_server import FakeLLMServer
from tests.support.factories import ConnectionFactory, UserFactory

KEY_A = "sk-conn-a-Zq81-do-not-show"
KEY_B = "sk-conn-b-Vx42-do-not-show"


@pytest.fixture(scope="session")
def second_server():
    """A second model server: it lists ``model-b`` and ``big-b`` (with vLLM's ``max_model_len``)."""
    server = FakeLLMServer(models=["model-b", {"id": "big-b", "max_model_len": 32768}]).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_second(second_server):
    second_server.reset()


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def conn_a(user, llm_server):
    """The user's connection to the session's model server (key KEY_A)."""
    return ConnectionFactory(owner=user, name="Server A", base_url=llm_server.base_url, api_key=KEY_A)


@pytest.fixture
def conn_b(user, second_server):
    """The user's connection to the second server (key KEY_B, an extra header)."""
    return ConnectionFactory(owner=user, name="Server B", base_url=second_server.base_url, api_key=KEY_B,
                             extra_headers='{"X-Team": "bee"}')
