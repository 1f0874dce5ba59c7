"""The README's example (examples/ab_compare.py) runs a blind A/B comparison end to end against a
real stack: uvicorn, a Celery worker, the scripted model server. The agents exist already
(``--agent-a/-b``, made here through the ORM); creating them through ``POST /api/agents`` is the
agents API's part."""

from __future__ import annotations

import subprocess
import sys

import pytest

from accounts.models import ApiToken
from comparisons.models import Comparison, Vote
from tests.support.factories import AgentFactory, UserFactory
from tests.support.processes import ROOT

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_the_example_runs_a_blind_comparison_and_prints_the_results(asgi_server, celery_worker, llm_server):
    user = UserFactory()
    token = ApiToken.issue(user=user)[1]
    terse = AgentFactory(owner=user, name="Terse", model="model-terse", system_prompt="Be terse.")
    chatty = AgentFactory(owner=user, name="Chatty", model="model-chatty", system_prompt="Be chatty.")
    args = [sys.executable, str(ROOT / "examples" / "ab_compare.py"), "--url", asgi_server, "--token", token,
            "--agent-a", str(terse.pk), "--label-a", "Terse", "--agent-b", str(chatty.pk), "--label-b", "Chatty",
            "--prompt", "What is a B-tree?", "--prompt", "Name a prime.", "--vote", "a",
            "--tag", "script-test", "--timeout", "60"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout

    comparisons = list(Comparison.objects.filter(owner=user, tags__name="script-test").order_by("created_at"))
    assert len(comparisons) == 2 and all(c.blind and c.revealed_at for c in comparisons)
    assert [c.prompts for c in comparisons] == [["What is a B-tree?"], ["Name a prime."]]
    assert {c.branch_point_id for c in comparisons} == {comparisons[0].branch_point_id}  # one branch point
    wins = {"Terse": 0, "Chatty": 0}
    for comparison in comparisons:
        vote = Vote.objects.get(comparison=comparison)
        assert vote.choice == "a_better"  # --vote a: the left column, whichever variant the shuffle put there
        left = comparison.variants.get(position=comparison.column_order[0])
        assert vote.ranks.get(rank=1).variant == left
        wins[left.label] += 1
        assert f"a_better (A was {left.label}, B was " in out
    models = {record["body"].get("model") for record in llm_server.requests}
    assert {"model-terse", "model-chatty"} <= models  # each agent answered with its own model

    table = out[out.index("Results over 2 comparisons, 2 votes (tag script-test)"):].splitlines()
    assert table[2].split()[:3] == ["label", "model", "votes"]
    rows = {line.split()[0]: line.split() for line in table[4:] if line.strip()}
    assert set(rows) == {"Terse", "Chatty"}
    for label, model in (("Terse", "model-terse"), ("Chatty", "model-chatty")):
        assert rows[label][1] == model and rows[label][2] == "2" and rows[label][3] == str(wins[label])
