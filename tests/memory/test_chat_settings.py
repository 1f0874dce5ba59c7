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
from memory.models import BranchSettings, Pin
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


def _meter(html: str) -> dict:
    return {part: int(tokens) for part, tokens in
            re.findall(r'data-part="(\w+)"><td>\w+</td><td class="num">(\d+)</td>', html)}


def test_the_panel_previews_the_next_context_exactly(client, user, make_agent, django_capture_on_commit_callbacks):
    """The meter is the engine's build of the next context, counted with the endpoint's counter: the
    turn started after saving sends exactly what the preview said, plus its own input."""
    from engine.context import build_context

    agent = make_agent(system_prompt="Short.", memory_window_size=6)
    other = make_agent(system_prompt="Be terse.", memory_window_size=2)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 6, agent=agent, words=8)
    Pin.objects.create(run=runs[0])
    client.force_login(user)
    url = reverse("chatmemory:settings", args=[runs[-1].pk])
    page = client.get(url).content.decode()
    now = _meter(page)
    assert set(now) == {"system", "pin", "history", "primer"} and "Nothing saved yet" in page

    long_prompt = "Always answer in the voice of a ship's captain from the nineteenth century. " * 5
    form = {"agent": other.pk, "system_prompt": long_prompt, "params": "", "compaction": ""}
    preview = client.post(url, {**form, "preview": "1"})
    html = preview.content.decode()
    assert preview.status_code == 200 and "Preview, not saved" in html and not BranchSettings.objects.exists()
    shown = _meter(html)
    assert shown["system"] > now["system"] and shown["history"] < now["history"], "the new prompt; a window of 2"
    assert f'id="settings-sum">{sum(shown.values())}<' in html

    assert client.post(url, form).status_code == 302
    below = _start(session, runs[-1], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    sent = build_context(below).parts()["totals"]  # the endpoint's counter, as the worker counts
    sent.pop("input")
    assert sent == shown, "the preview is the next context, part by part"


def test_the_panel_says_when_the_pins_alone_do_not_fit(client, user, make_agent):
    agent = make_agent(context_window=120, reserved_output_tokens=20)
    runs = add_chain(SessionFactory(owner=user), None, 4, agent=agent, words=30)
    Pin.objects.create(run=runs[0])
    Pin.objects.create(run=runs[1])
    client.force_login(user)
    html = client.get(reverse("chatmemory:settings", args=[runs[-1].pk])).content.decode()
    assert 'id="settings-overflow"' in html and "The pinned messages need" in html


EDITOR = {"system_prompt": "", "params": "", "compaction_mode": "custom", "threshold": "70", "target": "30",
          "tool_results_use": "on", "tool_results_order": "1", "tool_results_action": "drop",
          "tool_results_max_chars": "0", "keep_last_turns_use": "on", "keep_last_turns_order": "2",
          "keep_last_turns_turns": "20", "summarize_use": "on", "summarize_order": "3",
          "summarize_keep_recent_turns": "4", "summarize_max_tokens": "200"}


def test_the_strategy_editor_composes_the_policy_in_order(client, user, make_agent,
                                                          django_capture_on_commit_callbacks):
    """The panel's strategy editor: the strategies ticked, in the order given, with their parameters and
    the threshold and target as % of the window, saved as the branch's policy (what the API takes);
    the next turn records it as its compaction policy; the form shows it again."""
    agent = make_agent(context_window=600, reserved_output_tokens=100)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=10)
    client.force_login(user)
    url = reverse("chatmemory:settings", args=[runs[-1].pk])
    reordered = {**EDITOR, "keep_last_turns_order": "1", "tool_results_order": "2", "summarize_use": ""}
    assert client.post(url, reordered).status_code == 302
    saved = BranchSettings.objects.get()
    assert saved.compaction == {"enabled": True, "threshold": 0.7, "target": 0.3, "strategies": [
        {"type": "keep_last_turns", "turns": 20},
        {"type": "tool_results", "action": "drop", "max_chars": 0}]}
    below = _start(session, runs[-1], django_capture_on_commit_callbacks=django_capture_on_commit_callbacks,
                   agent=agent)
    assert below.params["compaction"] == saved.compaction

    html = client.get(url).content.decode()
    assert re.search(r'<input type="radio" name="compaction_mode" value="custom"[^>]*checked', html)
    assert 'name="keep_last_turns_order" value="1"' in html and 'name="keep_last_turns_turns" value="20"' in html
    assert not re.search(r'name="summarize_use"[^>]*checked', html)

    assert client.post(url, {**EDITOR, "compaction_mode": "off"}).status_code == 302
    assert BranchSettings.objects.latest("id").compaction == {"enabled": False}
    assert client.post(url, {**EDITOR, "compaction_mode": "agent"}).status_code == 302
    assert BranchSettings.objects.latest("id").compaction == {}


@pytest.mark.parametrize("change,says", [
    ({"tool_results_use": "", "keep_last_turns_use": "", "summarize_use": ""}, "Tick at least one strategy"),
    ({"target": "90"}, "the target must not be above the threshold"),
    ({"summarize_max_tokens": "3"}, "Ensure this value is greater than or equal to 16"),
    ({"threshold": "0"}, "Ensure this value is greater than or equal to 1"),
])
def test_a_refused_strategy_says_why_and_saves_nothing(client, user, change, says):
    run = add_chain(SessionFactory(owner=user), None, 2)[-1]
    client.force_login(user)
    response = client.post(reverse("chatmemory:settings", args=[run.pk]), {**EDITOR, **change})
    assert response.status_code == 400 and says in response.content.decode()
    assert not BranchSettings.objects.exists()


def test_the_editor_keeps_a_summary_prompt_it_does_not_show(client, user):
    run = add_chain(SessionFactory(owner=user), None, 2)[-1]
    BranchSettings.objects.create(run=run, compaction={"strategies": [
        {"type": "summarize", "keep_recent_turns": 2, "max_tokens": 64, "prompt": "[[reply:S]] Sum up."}]})
    client.force_login(user)
    url = reverse("chatmemory:settings", args=[run.pk])
    assert 'name="summarize_keep_recent_turns" value="2"' in client.get(url).content.decode()
    client.post(url, {**EDITOR, "tool_results_use": "", "keep_last_turns_use": ""})
    strategy = BranchSettings.objects.latest("id").compaction["strategies"]
    assert strategy == [{"type": "summarize", "keep_recent_turns": 4, "max_tokens": 200,
                         "prompt": "[[reply:S]] Sum up."}]
