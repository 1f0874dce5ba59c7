"""Chat settings per branch: saved on a turn, taken (and recorded) by every run started below it
from the next turn on; a branch started above it keeps its own; the one validator; 404 cross-user;
audited; the settings panel page."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditLog
from conversations import services
from engine.compaction import compaction_consider
from memory.models import BranchSettings
from tests.memory.conftest import built_for, estimate_counter
from tests.support.factories import AgentFactory, SessionFactory, add_chain

pytestmark = pytest.mark.django_db

SETTINGS = {"system_prompt": "Speak like a sailor.", "params": {"temperature": 0.1},
            "compaction": {"enabled": False}}


def _start(session, parent, text="next", django_capture_on_commit_callbacks=None, **kwargs):
    with django_capture_on_commit_callbacks(execute=False):
        return services.run_start(session=session, input=text, parent=parent, **kwargs)


def test_settings_apply_from_the_next_turn_and_are_recorded_on_it(api, user, django_capture_on_commit_callbacks):
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 4)
    saved = api.put(f"/api/runs/{runs[-1].pk}/settings", SETTINGS, content_type="application/json")
    assert saved.status_code == 201
    assert api.get(f"/api/runs/{runs[-1].pk}/settings").json()["system_prompt"] == "Speak like a sailor."
    assert api.get(f"/api/runs/{runs[-2].pk}/settings").json()["id"] is None, "not above the turn they were saved on"
    assert AuditLog.objects.get(action="settings.change").details["system_prompt"] == "Speak like a sailor."

    below = _start(session, runs[-1], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    assert below.params["system_override"] == "Speak like a sailor." and below.params["temperature"] == 0.1
    assert below.params["branch_settings"] == saved.json()["id"] and below.params["compaction"] == {"enabled": False}
    assert built_for(below).messages[0] == {"role": "system", "content": "Speak like a sailor."}

    earlier_branch = _start(session, runs[1], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    assert "system_override" not in earlier_branch.params and "branch_settings" not in earlier_branch.params
    assert built_for(earlier_branch).messages[0]["content"] == "You are a helpful assistant."

    sibling = _start(session, runs[-1], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    assert sibling.params["system_override"] == "Speak like a sailor."
    sibling.status = "succeeded"
    sibling.save(update_fields=["status"])
    api.put(f"/api/runs/{sibling.pk}/settings", {"system_prompt": "Be brief."}, content_type="application/json")
    deeper = _start(session, sibling, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    assert deeper.params["system_override"] == "Be brief." and "temperature" not in deeper.params
    below.refresh_from_db()
    assert below.params["system_override"] == "Speak like a sailor.", "a run keeps what it was started with"


def test_a_regenerate_takes_the_settings_in_force(api, user, django_capture_on_commit_callbacks):
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 2)
    api.put(f"/api/runs/{runs[0].pk}/settings", SETTINGS, content_type="application/json")
    first = _start(session, runs[0], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        again = services.run_regenerate(run=first)
    assert again.params["system_override"] == "Speak like a sailor." and again.params["temperature"] == 0.1


def test_the_settings_agent_answers_runs_started_without_one(api, user, django_capture_on_commit_callbacks):
    agent = AgentFactory(owner=user, name="Sailor", system_prompt="Ahoy.", memory_id="sea")
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 2)
    api.put(f"/api/runs/{runs[-1].pk}/settings", {"agent_id": agent.pk}, content_type="application/json")
    run = _start(session, runs[-1], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    assert run.agent_id == agent.pk and run.memory_id == "sea"
    assert built_for(run).messages[0]["content"] == "Ahoy."


def test_compaction_settings_are_the_branchs_policy(api, user, make_agent, django_capture_on_commit_callbacks):
    agent = make_agent(context_window=600, reserved_output_tokens=100, compaction={"threshold": 0.3})
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=10)
    api.put(f"/api/runs/{runs[-1].pk}/settings", {"compaction": {"enabled": False}}, content_type="application/json")
    off = _start(session, runs[-1], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks,
                 agent=agent)
    off.status = "succeeded"
    assert compaction_consider(run=off, counter=estimate_counter()) is None, "compaction is off on this branch"
    with django_capture_on_commit_callbacks(execute=False):
        assert compaction_consider(run=runs[-1], counter=estimate_counter()) is not None, "above: the agent's"


@pytest.mark.parametrize("body,says", [
    ({"params": {"temperature": 9}}, "params: temperature must be between"),
    ({"params": {"colour": 1}}, "params: unknown parameters: colour"),
    ({"compaction": {"strategies": [{"type": "burn"}]}}, "compaction: each strategy"),
    ({"system_prompt": "x" * 20_001}, "system_prompt"),
    ({"agent_id": "seven"}, "agent_id"),
])
def test_bad_settings_say_why_and_write_nothing(api, user, body, says):
    run = add_chain(SessionFactory(owner=user), None, 1)[0]
    response = api.put(f"/api/runs/{run.pk}/settings", body, content_type="application/json")
    assert response.status_code == 400 and says in response.json()["detail"]
    assert not BranchSettings.objects.exists() and not AuditLog.objects.filter(action="settings.change").exists()


def test_other_users_runs_and_agents_are_404(api, user, other_user):
    theirs = add_chain(SessionFactory(owner=other_user), None, 1)[0]
    mine = add_chain(SessionFactory(owner=user), None, 1)[0]
    their_agent = AgentFactory(owner=other_user, name="Theirs")
    assert api.get(f"/api/runs/{theirs.pk}/settings").status_code == 404
    assert api.put(f"/api/runs/{theirs.pk}/settings", {}, content_type="application/json").status_code == 404
    assert api.put(f"/api/runs/{mine.pk}/settings", {"agent_id": their_agent.pk},
                   content_type="application/json").status_code == 404
    assert not BranchSettings.objects.exists()


def test_the_settings_panel_page(client, user):
    run = add_chain(SessionFactory(owner=user), None, 2)[-1]
    client.force_login(user)
    url = reverse("chatmemory:settings", args=[run.pk])
    assert "Nothing saved yet" in client.get(url).content.decode()
    refused = client.post(url, {"system_prompt": "Hi", "params": '{"top_p": 4}', "compaction": ""})
    assert refused.status_code == 400 and "top_p" in refused.content.decode() and not BranchSettings.objects.exists()
    assert client.post(url, {"system_prompt": "Hi", "params": '{"top_p": 0.5}', "compaction": ""}).status_code == 302
    saved = BranchSettings.objects.get()
    assert saved.system_prompt == "Hi" and saved.params == {"top_p": 0.5}
    assert "Now in force" in client.get(url).content.decode()


def test_the_panel_previews_the_token_meter_before_saving(client, user):
    from conversations.models import Step, StepKind

    run = add_chain(SessionFactory(owner=user), None, 2)[-1]
    Step.objects.create(run=run, kind=StepKind.LLM_CALL, name="llm", request={
        "context_parts": {"totals": {"system": 12, "history": 40, "input": 9, "primer": 3}}})
    client.force_login(user)
    url = reverse("chatmemory:settings", args=[run.pk])
    shown = client.get(url).content.decode()
    assert 'data-part="system"><td>system</td><td class="num">12</td>' in shown
    long_prompt = "Always answer in the voice of a ship's captain from the nineteenth century. " * 5
    preview = client.post(url, {"system_prompt": long_prompt, "params": "", "compaction": "", "preview": "1"})
    html = preview.content.decode()
    assert preview.status_code == 200 and "Preview (not saved)" in html
    system = int(re.search(r'data-part="system"><td>system</td><td class="num">(\d+)</td>', html).group(1))
    assert system > 60, "recounted for the longer prompt"
    assert 'data-part="history"><td>history</td><td class="num">40</td>' in html
    assert not BranchSettings.objects.exists(), "a preview saves nothing"
