"""The Agents page: create (validated by the one parameter validator, nothing written on refusal),
edit, duplicate, delete; shared agents usable, not editable; another user's agent 404; every change
in the audit log with the agent's settings; the composer's picker lists agents first."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from audit.models import AuditLog
from memory.models import Agent
from tests.support.factories import AgentFactory, SessionFactory

pytestmark = pytest.mark.django_db

FORM = {"name": "Pirate", "model": "", "system_prompt": "Answer like a pirate.", "params": '{"temperature": 0.3}',
        "memory_id": "default", "memory_window_size": "", "context_window": "", "reserved_output_tokens": "512",
        "compaction": "", "tools": ""}


def test_the_top_nav_links_the_agents_page(client, user):
    client.force_login(user)
    html = client.get(reverse("conversations:session_list")).content.decode()
    assert f'href="{reverse("agents:index")}"' in html and ">Agents<" in html


def test_creating_an_agent_saves_it_and_audits_its_system_prompt(client, user):
    client.force_login(user)
    response = client.post(reverse("agents:create"), FORM)
    agent = Agent.objects.get(owner=user, name="Pirate")
    assert response.status_code == 302 and response["Location"] == reverse("agents:detail", args=[agent.pk])
    assert agent.system_prompt == "Answer like a pirate." and agent.params == {"temperature": 0.3}
    row = AuditLog.objects.get(action="agent.create", target_id=str(agent.pk))
    assert row.actor_id == user.pk and row.details["system_prompt"] == "Answer like a pirate."
    listing = client.get(reverse("agents:index")).content.decode()
    assert "Pirate" in listing and f'id="agent-{agent.pk}"' in listing


@pytest.mark.parametrize("field,value,says", [
    ("params", '{"temperature": 7}', "temperature"),
    ("params", "{not json", "not valid JSON"),
    ("compaction", '{"strategies": [{"type": "shred"}]}', "each strategy needs a type"),
    ("tools", "bad tool!", "each tool is a name"),
])
def test_a_refused_agent_says_why_and_writes_nothing(client, user, field, value, says):
    client.force_login(user)
    before = AuditLog.objects.count()
    response = client.post(reverse("agents:create"), {**FORM, field: value})
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not Agent.objects.filter(owner=user).exists()
    assert AuditLog.objects.count() == before


def test_editing_an_agent_changes_it_and_audits_the_new_prompt(client, user):
    client.force_login(user)
    agent = AgentFactory(owner=user, name="Tutor", system_prompt="Explain.")
    response = client.post(reverse("agents:detail", args=[agent.pk]),
                           {**FORM, "name": "Tutor", "system_prompt": "Explain simply.", "memory_window_size": "6"})
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.system_prompt == "Explain simply." and agent.memory_window_size == 6
    row = AuditLog.objects.filter(action="agent.change", target_id=str(agent.pk)).latest("id")
    assert row.details["system_prompt"] == "Explain simply." and row.details["memory_window_size"] == 6


def test_a_bad_edit_keeps_the_agent_as_it_was(client, user):
    client.force_login(user)
    agent = AgentFactory(owner=user, name="Tutor", system_prompt="Explain.", params={"temperature": 0.1})
    response = client.post(reverse("agents:detail", args=[agent.pk]),
                           {**FORM, "name": "Tutor", "system_prompt": "Changed", "params": '{"top_p": 3}'})
    assert response.status_code == 400 and "top_p" in response.content.decode()
    agent.refresh_from_db()
    assert agent.system_prompt == "Explain." and agent.params == {"temperature": 0.1}


def test_another_users_agent_is_404(client, user, other_user):
    theirs = AgentFactory(owner=other_user, name="Secret", system_prompt="hidden prompt")
    client.force_login(user)
    for name in ("agents:detail", "agents:duplicate", "agents:delete"):
        url = reverse(name, args=[theirs.pk])
        response = client.post(url, FORM) if name != "agents:detail" else client.get(url)
        assert response.status_code == 404, name
    assert "hidden prompt" not in client.get(reverse("agents:index")).content.decode()
    assert Agent.objects.filter(owner=other_user).count() == 1


def test_a_shared_agent_is_usable_and_duplicable_but_not_editable(client, user):
    shared = AgentFactory(owner=None, name="House style", system_prompt="Be formal.")
    client.force_login(user)
    page = client.get(reverse("agents:detail", args=[shared.pk])).content.decode()
    assert "Be formal." in page and 'name="system_prompt"' not in page
    refused = client.post(reverse("agents:detail", args=[shared.pk]), {**FORM, "name": "House style"})
    assert refused.status_code == 403
    shared.refresh_from_db()
    assert shared.system_prompt == "Be formal."
    assert client.post(reverse("agents:delete", args=[shared.pk])).status_code == 403
    response = client.post(reverse("agents:duplicate", args=[shared.pk]))
    copy = Agent.objects.get(owner=user)
    assert response.status_code == 302 and copy.name == "House style (copy)" and copy.system_prompt == "Be formal."
    client.post(reverse("agents:duplicate", args=[shared.pk]))
    assert set(Agent.objects.filter(owner=user).values_list("name", flat=True)) == {
        "House style (copy)", "House style (copy 2)"}


def test_an_administrator_may_edit_a_shared_agent(client, user):
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="change_agent"))
    shared = AgentFactory(owner=None, name="House style", system_prompt="Be formal.")
    client.force_login(user)
    response = client.post(reverse("agents:detail", args=[shared.pk]),
                           {**FORM, "name": "House style", "system_prompt": "Be very formal."})
    assert response.status_code == 302
    shared.refresh_from_db()
    assert shared.system_prompt == "Be very formal." and shared.owner_id is None


def test_deleting_an_agent_audits_it(client, user):
    agent = AgentFactory(owner=user, name="Gone")
    client.force_login(user)
    assert client.post(reverse("agents:delete", args=[agent.pk])).status_code == 302
    assert not Agent.objects.filter(pk=agent.pk).exists()
    assert AuditLog.objects.filter(action="agent.delete", target_id=str(agent.pk)).exists()


def test_the_composers_picker_lists_agents_before_models(client, user):
    AgentFactory(owner=user, name="Zed agent")
    session = SessionFactory(owner=user)
    client.force_login(user)
    html = client.get(reverse("conversations:session_detail", args=[session.pk])).content.decode()
    picker = html[html.index('id="id_agent"'):]
    picker = picker[: picker.index("</select>")]
    assert "Zed agent" in picker
    assert "<optgroup" not in picker[: picker.index("Zed agent")], "agents come before the connections' models"
