"""The README's example (examples/ab_compare.py) as written there: it creates one agent on each of
two connections through ``POST /api/agents`` and runs a blind A/B comparison across the two model
servers; each server's own request log proves which agent it answered."""

from __future__ import annotations

import subprocess
import sys

import pytest

from accounts.models import ApiToken
from comparisons.models import Comparison
from memory.models import Agent
from tests.support.processes import ROOT

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_example_makes_agents_on_two_connections_and_compares_them(
        asgi_server, celery_worker, llm_server, second_server, user, conn_a, conn_b):
    token = ApiToken.issue(user=user)[1]
    args = [sys.executable, str(ROOT / "examples" / "ab_compare.py"), "--url", asgi_server, "--token", token,
            "--model-a", "fake-model", "--connection-a", str(conn_a.pk), "--label-a", "Local",
            "--model-b", "model-b", "--connection-b", str(conn_b.pk), "--label-b", "Remote",
            "--prompt", "What is a B-tree?", "--vote", "b", "--tag", "two-connections", "--timeout", "60"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr + done.stdout

    agents = {a.connection_id: a for a in Agent.objects.filter(owner=user, made_by_comparison=False)}
    assert set(agents) == {conn_a.pk, conn_b.pk}  # made through the agents API, one per connection
    comparison = Comparison.objects.get(owner=user, tags__name="two-connections")
    assert comparison.blind and comparison.revealed_at
    assert any(r["body"].get("model") == "fake-model" for r in llm_server.requests)
    assert any(r["body"].get("model") == "model-b" for r in second_server.requests)
    assert not any(r["body"].get("model") == "model-b" for r in llm_server.requests)
    assert "Results over 1 comparisons, 1 votes (tag two-connections):" in done.stdout
