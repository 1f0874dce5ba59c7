"""Thumbs, Continue generating and pins through the test client: what is stored, refused input
(a clear message, nothing written) and the settings that turn each off."""

from __future__ import annotations

import pytest

from conversations.models import Run, Session
from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def me(client):
    user = UserFactory()
    client.force_login(user)
    return user


def test_thumbs_are_stored_per_run_and_bad_values_are_refused(client, me):
    session = SessionFactory(owner=me)
    run = build_chain(session, 1)[0]
    url = f"/s/{session.pk}/runs/{run.pk}/rate"
    response = client.post(url, {"rating": "up"}, headers=HTMX)
    assert response.status_code == 200 and 'aria-pressed="true"' in response.content.decode()
    assert Run.objects.get(pk=run.pk).rating == 1
    client.post(url, {"rating": "down"}, headers=HTMX)
    assert Run.objects.get(pk=run.pk).rating == -1
    refused = client.post(url, {"rating": "sideways"}, headers=HTMX)
    assert refused.status_code == 400 and "rating must be" in refused.content.decode()
    assert Run.objects.get(pk=run.pk).rating == -1  # nothing written
    client.post(url, {"rating": ""}, headers=HTMX)
    assert Run.objects.get(pk=run.pk).rating is None


def test_only_an_answer_cut_at_its_token_limit_can_be_continued(client, me, settings):
    session = SessionFactory(owner=me)
    run = build_chain(session, 1)[0]
    refused = client.post(f"/s/{session.pk}/runs/{run.pk}/continue", headers=HTMX)
    assert refused.status_code == 409 and "token limit" in refused.content.decode()
    assert Run.objects.filter(session=session).count() == 1
    cut = RunFactory(session=session, parent_run=run, finish_reason="length")
    Session.objects.filter(pk=session.pk).update(active_run=cut)
    page = client.get(f"/s/{session.pk}/").content.decode()
    assert "Continue generating" in page
    settings.ARBOR_CHAT_CONTINUE = False
    assert "Continue generating" not in client.get(f"/s/{session.pk}/").content.decode()
    assert client.post(f"/s/{session.pk}/runs/{cut.pk}/continue", headers=HTMX).status_code == 404


def test_pins_and_date_groups_follow_their_settings(client, me, settings):
    sessions = [SessionFactory(owner=me, title=f"S{i}") for i in range(3)]
    response = client.post(f"/s/{sessions[0].pk}/pin", {"pinned": "1", "current": str(sessions[1].pk)}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and html.index("Pinned") < html.index("S0") < html.index("Today")
    assert Session.objects.get(pk=sessions[0].pk).pinned_at is not None
    settings.ARBOR_CHAT_PINS = settings.ARBOR_CHAT_DATE_GROUPS = False
    page = client.get(f"/s/{sessions[1].pk}/").content.decode()
    assert "side-group-title" not in page and 'class="icon-btn pin"' not in page
    run = build_chain(sessions[1], 1)[0]
    assert "Good answer" in client.get(f"/s/{sessions[1].pk}/").content.decode()
    settings.ARBOR_CHAT_THUMBS = False
    assert "Good answer" not in client.get(f"/s/{sessions[1].pk}/").content.decode()
    assert client.post(f"/s/{sessions[1].pk}/runs/{run.pk}/rate", {"rating": "up"}).status_code == 404
