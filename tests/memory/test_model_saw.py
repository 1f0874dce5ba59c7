"""“What the model saw”: for its owner, the exact messages of a turn's last model call with their
parts and tokens, the SHA-256 check and what the path holds that the model did not see; the page
shows the same data as ``GET /api/runs/{id}/context`` byte for byte; another user's run is 404."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.urls import reverse

from conversations import context_spec as ctx
from conversations import services
from conversations.models import Run, RunStatus
from memory.models import Compaction, CompactionStatus, Pin
from tests.support.factories import SessionFactory, add_chain
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _turn(session, agent, text):
    """One turn answered by the real worker."""
    run = services.run_start(session=session, agent=agent, input=text)
    run = wait_for(lambda: (r := Run.objects.get(pk=run.pk)).is_finished and r, 30, message="the turn")
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def _pre(html: str, element_id: str) -> str:
    match = re.search(rf'<pre id="{element_id}"[^>]*>(.*?)</pre>', html, re.S)
    assert match, element_id
    return unescape(match.group(1))


@pytest.mark.worker
def test_the_page_and_the_api_show_the_same_context_with_its_parts(celery_worker, client, user, make_agent,
                                                                   llm_server):
    agent = make_agent(system_prompt="Answer like a pirate.", memory_window_size=4)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 8, agent=agent)
    session.active_run = runs[-1]
    session.save()
    Pin.objects.create(run=runs[1])
    Compaction.objects.create(run=runs[5], memory_id=agent.memory_id, status=CompactionStatus.READY, from_depth=3,
                              summary="They talked about boats.")
    run = _turn(session, agent, "[[reply:Arr.]] and now? “quoted” <b>")
    client.force_login(user)
    api = client.get(f"/api/runs/{run.pk}/context").json()
    assert api["verified"] and api["sha256"] == ctx.digest(api["messages"])
    assert api["messages"] == llm_server.requests[-1]["body"]["messages"], "exactly what the endpoint received"
    assert [p["part"] for p in api["parts"]] == ["system", "summary", "pin", "pin", "history", "history", "history",
                                                 "history", "input"]
    assert api["messages"][0]["content"] == "Answer like a pirate."
    assert api["messages"][2]["content"] == "turn 1 question"
    assert sum(api["totals"].values()) == api["context_tokens"]
    assert api["not_seen"][:2] == [
        f"Turns 1, 3 were summarised (summary {Compaction.objects.get().pk}): the model saw the summary, "
        "not the turns.",
        "Turns 4–6 were left out (memory window, context budget or compaction)."], "turn 2 is pinned"

    page = client.get(reverse("conversations:run_context", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert _pre(html, "saw-exact") == json.dumps(api["messages"], ensure_ascii=False, indent=2)
    assert f'<code id="saw-sha256">{api["sha256"]}</code>' in html and "matches what was sent" in html
    for note in api["not_seen"]:
        assert note in unescape(html)
    for part, tokens in api["totals"].items():
        assert re.search(rf'data-part="{part}"><td>[^<]+</td><td class="num">{tokens}</td>', html), part


def test_another_users_run_is_404_and_a_run_without_a_call_409(client, user, other_user):
    theirs = add_chain(SessionFactory(owner=other_user), None, 1)[0]
    mine = add_chain(SessionFactory(owner=user), None, 1)[0]
    client.force_login(user)
    assert client.get(reverse("conversations:run_context", args=[theirs.pk])).status_code == 404
    assert client.get(f"/api/runs/{theirs.pk}/context").status_code == 404
    response = client.get(reverse("conversations:run_context", args=[mine.pk]))
    assert response.status_code == 409 and "has not called the model yet" in response.content.decode()
