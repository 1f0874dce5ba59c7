"""Memory controls in a real browser (Debian's Chromium via Playwright, Arbor under uvicorn, a real
Celery worker and the scripted model server), at 1280 and 390 px, with axe-core showing no serious
or critical violation on each page used:

- create an agent with a system prompt on the Agents page, chat with it, and the run's audit page
  shows the prompt; "What the model saw" shows the same messages as GET /api/runs/{id}/context,
  byte for byte (its "Exact JSON sent"), and the same SHA-256;
- pin turn 3 of a 60-turn chat with a small window: turn 3 is verbatim in every later context;
- Compact now, then expand, edit and undo the summary: each later context matches what the page said.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from conversations.models import Run, RunStatus, Session
from memory.models import Agent, BranchSettings, Compaction, CompactionStatus
from tests.support.factories import AgentFactory, SessionFactory, add_chain
from tests.support.processes import wait_for
from tests.ui.conftest import artifacts, chromium, login, new_page  # noqa: F401 - fixtures
from tests.ui.test_chat_ux import DESKTOP, PHONE, axe, serious

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
VIEWPORTS = [pytest.param(DESKTOP, id="1280"), pytest.param(PHONE, id="390")]



def _user():
    return get_user_model().objects.create_superuser(f"mem{timezone.now().timestamp():.6f}", password="pw-123456")



def _send(page, base, session, text) -> Run:
    """Type a message in the chat and wait for the worker's answer."""
    page.goto(f"{base}/s/{session.pk}/")
    before = set(Run.objects.filter(session=session).values_list("pk", flat=True))
    page.fill("#id_input", text)
    page.locator("button.send").click()
    run = wait_for(lambda: Run.objects.filter(session=session).exclude(pk__in=before).first(), 20, message="the run")
    return wait_for(lambda: (r := Run.objects.get(pk=run.pk)).is_finished and r, 40, message="the answer")


def _context(page, base, run) -> dict:
    response = page.request.get(f"{base}/api/runs/{run.pk}/context")
    assert response.status == 200, response.text()
    return response.json()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_agent_chat_audit_and_what_the_model_saw(new_page, asgi_server, celery_worker, llm_server, artifacts,  # noqa: F811
                                                 viewport):
    user = _user()
    session = SessionFactory(owner=user, title="Pirate chat")
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/agents/")
    assert serious(axe(page)) == []
    page.fill("#id_name", "Pirate")
    page.fill("#id_system_prompt", "Answer like a pirate, matey.")
    page.fill("#id_params", '{"temperature": 0.4}')
    page.get_by_role("button", name="Create agent").click()
    page.wait_for_url("**/agents/*/")
    agent = Agent.objects.get(owner=user, name="Pirate")
    page.screenshot(path=str(artifacts / f"memory-agent-{viewport[0]}.png"), full_page=True)

    page.goto(f"{asgi_server}/s/{session.pk}/")
    page.select_option("#id_agent", str(agent.pk))
    page.fill("#id_input", "Where is the treasure? [[reply:Arr, under the palm.]]")
    page.locator("button.send").click()
    run = wait_for(lambda: (r := Run.objects.filter(session=session).first()) and r.is_finished and r, 40,
                   message="the answer")
    assert run.status == RunStatus.SUCCEEDED and run.agent_id == agent.pk
    sent = llm_server.requests[-1]["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "Answer like a pirate, matey."}

    page.goto(f"{asgi_server}/audit/runs/{run.pk}/")
    assert "Answer like a pirate, matey." in page.content()

    api = _context(page, asgi_server, run)
    page.goto(f"{asgi_server}/runs/{run.pk}/context")
    assert serious(axe(page)) == []
    exact = page.locator("#saw-exact").text_content()
    assert exact == json.dumps(api["messages"], ensure_ascii=False, indent=2), "the page shows the API's messages"
    assert page.locator("#saw-sha256").text_content() == api["sha256"] and api["verified"]
    assert [p["part"] for p in api["parts"]] == ["system", "input"]
    page.screenshot(path=str(artifacts / f"memory-model-saw-{viewport[0]}.png"), full_page=True)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_pinned_turn_3_stays_verbatim_in_every_later_context(new_page, asgi_server, celery_worker, llm_server,  # noqa: F811
                                                               artifacts, viewport):  # noqa: F811
    user = _user()
    agent = AgentFactory(owner=user, name="Small window", memory_window_size=4)
    session = SessionFactory(owner=user, title="Sixty turns")
    runs = add_chain(session, None, 60, agent=agent)
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1], default_agent=agent)
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/memory/runs/{runs[2].pk}/pinned")
    page.locator("#pin-this").click()
    page.wait_for_selector("#pins li[id^=pin-]")
    assert "Turn 3" in page.locator("#pins").text_content()
    assert serious(axe(page)) == []
    for i in range(3):
        run = _send(page, asgi_server, session, f"later question {i}")
        assert run.status == RunStatus.SUCCEEDED, run.error
        messages = _context(page, asgi_server, run)["messages"]
        assert [m["content"] for m in messages[1:3]] == ["turn 2 question", "turn 2 answer"], "turn 3, verbatim"
        assert llm_server.requests[-1]["body"]["messages"] == messages
        assert len(messages) == 1 + 2 + 4 + 1
    page.screenshot(path=str(artifacts / f"memory-pinned-{viewport[0]}.png"), full_page=True)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_pin_from_the_turn_menu_shows_the_pin_mark(new_page, asgi_server, llm_server, artifacts,  # noqa: F811
                                                   viewport):
    user = _user()
    session = SessionFactory(owner=user, title="Five turns")
    runs = add_chain(session, None, 5)
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    turn = page.locator(f"#turn-{runs[2].pk}")
    assert turn.locator(".badge.pinned").count() == 0
    turn.locator("details.more-tools > summary").click()
    turn.get_by_role("button", name="Pin turn 3").click()
    page.wait_for_selector(f"#pin-mark-{runs[2].pk}")
    mark = page.locator(f"#turn-{runs[2].pk} .badge.pinned")
    assert mark.is_visible() and mark.inner_text().strip().startswith("Pinned")
    assert page.get_by_role("link", name="Pinned: turn 3, see the Pinned list").count() == 1, "its name"
    assert mark.get_attribute("href") == f"/memory/runs/{runs[2].pk}/pinned"
    assert page.locator(".badge.pinned").count() == 1, "only turn 3 is marked"
    assert serious(axe(page)) == []
    mark.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / f"memory-pin-mark-{viewport[0]}.png"))
    turn = page.locator(f"#turn-{runs[2].pk}")
    turn.locator("details.more-tools > summary").click()
    turn.get_by_role("button", name="Unpin turn 3").click()
    page.wait_for_selector(f"#pin-mark-{runs[2].pk}", state="detached")
    assert not runs[2].pins.exists()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_strategy_editor_previews_and_saves(new_page, asgi_server, llm_server, artifacts, viewport):  # noqa: F811
    user = _user()
    agent = Agent.objects.create(owner=user, name="Editor", memory_window_size=6)
    session = SessionFactory(owner=user, title="Strategies")
    runs = add_chain(session, None, 6, agent=agent)
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/memory/runs/{runs[-1].pk}/settings")
    page.get_by_label("These strategies, in order").check()
    page.fill("#id_threshold", "70")
    page.locator("#strategy-keep_last_turns").get_by_label("Use it").check()
    page.fill("#id_keep_last_turns_order", "1")
    page.fill("#id_keep_last_turns_turns", "12")
    page.locator("#strategy-summarize").get_by_label("Use it").check()
    page.fill("#id_summarize_order", "2")
    page.fill("#id_system_prompt", "Answer in one line. " * 20)
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("text=Preview, not saved")
    assert serious(axe(page)) == []
    system = int(page.locator('#settings-parts tr[data-part="system"] td.num').text_content())
    assert system > 100, "the meter counts the prompt typed"
    page.screenshot(path=str(artifacts / f"memory-strategy-editor-{viewport[0]}.png"), full_page=True)
    page.get_by_role("button", name="Save from the next turn").click()
    page.wait_for_selector("text=Settings saved")
    saved = BranchSettings.objects.get(run=runs[-1])
    assert saved.compaction == {"enabled": True, "threshold": 0.7, "target": 0.4, "strategies": [
        {"type": "keep_last_turns", "turns": 12}, {"type": "summarize", "keep_recent_turns": 4, "max_tokens": 256}]}
    assert page.locator("#id_keep_last_turns_turns").input_value() == "12"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_compact_now_expand_edit_and_undo(new_page, asgi_server, celery_worker, llm_server, artifacts,  # noqa: F811
                                          viewport):
    user = _user()
    agent = AgentFactory(owner=user, name="Summariser", compaction={"strategies": [
        {"type": "summarize", "keep_recent_turns": 2, "max_tokens": 64,
         "prompt": "[[reply:The user asked about turns 0 to 5.]] Summarise."}]})
    session = SessionFactory(owner=user, title="Compact me")
    runs = add_chain(session, None, 8, agent=agent)
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1], default_agent=agent)
    page = new_page(viewport, bypass_csp=True)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/memory/runs/{runs[-1].pk}/pinned")
    page.get_by_role("button", name="Compact now").click()
    compaction = wait_for(lambda: (c := Compaction.objects.filter(run=runs[-1]).first())
                          and c.status == CompactionStatus.READY and c, 40, message="the compaction")
    page.goto(f"{asgi_server}/memory/compactions/{compaction.pk}/")
    assert page.locator("#marker").text_content().startswith("Turns 1–6 summarised: ")
    assert "turn 0 question" in page.locator("#replaced").text_content(), "Expand shows the replaced turns"
    assert page.locator("#id_summary").input_value() == "The user asked about turns 0 to 5."
    assert serious(axe(page)) == []
    page.screenshot(path=str(artifacts / f"memory-compaction-{viewport[0]}.png"), full_page=True)

    page.fill("#id_summary", "The user likes boats.")
    page.get_by_role("button", name="Save summary").click()
    page.wait_for_selector("text=Summary saved as a new version")
    edited = _send(page, asgi_server, session, "what do I like?")
    messages = _context(page, asgi_server, edited)["messages"]
    assert messages[1]["content"].endswith("The user likes boats."), "the edited summary, as the page said"
    assert "turn 0 question" not in [m["content"] for m in messages]

    page.goto(f"{asgi_server}/memory/compactions/{compaction.pk}/")
    page.get_by_role("button", name="Undo compaction").click()
    page.wait_for_selector("text=Undone.")
    raw = _send(page, asgi_server, session, "and now?")
    contents = [m["content"] for m in _context(page, asgi_server, raw)["messages"]]
    assert "turn 0 question" in contents and not any("likes boats" in c for c in contents), "the raw turns again"
