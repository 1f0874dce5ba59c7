"""Run creation is rate-limited per user, across the pages and the API, with a clear 429."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import ApiToken
from conversations.models import Run
from tests.support.factories import RunFactory, SessionFactory


@pytest.fixture
def limited(settings, clean_rate_cache):
    settings.ARBOR_RUN_RATE = "3/m"
    return settings


@pytest.mark.django_db
def test_pages_answer_429_over_the_limit_and_create_nothing(client, user, limited):
    """The 4th run a minute from the chat box is refused with 429, a readable message and
    Retry-After; the first three were created."""
    session = SessionFactory(owner=user)
    client.force_login(user)
    url = reverse("conversations:run_create", args=[session.pk])
    statuses = []
    for i in range(4):
        statuses.append(client.post(url, {"input": f"hello {i}"}, HTTP_HX_REQUEST="true").status_code)
        Run.objects.filter(session=session).update(status="succeeded")  # the next run continues from it
    assert statuses == [200, 200, 200, 429]
    response = client.post(url, {"input": "again"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 429
    assert "Too many runs: at most 3 may be started per minute" in response.content.decode()
    assert 1 <= int(response["Retry-After"]) <= 60 + 5
    assert Run.objects.filter(session=session).count() == 3


@pytest.mark.django_db
def test_the_limit_is_shared_by_pages_and_api_and_counts_regenerate_and_edit(client, user, limited):
    """Starts, regenerates and edits, through the pages or the API, draw on one per-user budget."""
    session = SessionFactory(owner=user)
    run = RunFactory(session=session)
    token = ApiToken.issue(user=user)[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.force_login(user)
    assert client.post(reverse("conversations:run_regenerate", args=[session.pk, run.pk])).status_code != 429
    assert client.post(f"/api/runs/{run.pk}/edit", data={"input": "changed"}, content_type="application/json",
                       **auth).status_code == 202
    assert client.post(f"/api/sessions/{session.pk}/runs", data={"input": "x", "parent_run_id": str(run.pk)},
                       content_type="application/json", **auth).status_code == 202
    response = client.post(f"/api/runs/{run.pk}/regenerate", **auth)
    assert response.status_code == 429
    assert response.json()["detail"].startswith("Too many runs")
    assert client.post(reverse("conversations:run_edit", args=[session.pk, run.pk]), {"input": "y"}).status_code == 429


@pytest.mark.django_db
def test_limits_are_per_user(client, user, other_user, limited):
    """One user reaching the limit does not limit another."""
    mine, theirs = SessionFactory(owner=user), SessionFactory(owner=other_user)
    client.force_login(user)
    for i in range(3):
        client.post(f"/api/sessions/{mine.pk}/runs", data={"input": f"{i}"}, content_type="application/json")
    assert client.post(f"/api/sessions/{mine.pk}/runs", data={"input": "x"},
                       content_type="application/json").status_code == 429
    client.force_login(other_user)
    assert client.post(f"/api/sessions/{theirs.pk}/runs", data={"input": "x"},
                       content_type="application/json").status_code == 202


@pytest.mark.django_db
def test_reads_are_not_limited_and_an_empty_rate_disables_the_limit(client, user, settings, clean_rate_cache):
    """Only run creation counts; ARBOR_RUN_RATE="" turns the limit off."""
    settings.ARBOR_RUN_RATE = "1/m"
    session = SessionFactory(owner=user)
    client.force_login(user)
    for _ in range(3):
        assert client.get(f"/api/sessions/{session.pk}").status_code == 200
    response = client.post(f"/api/sessions/{session.pk}/runs", data={"input": "a"}, content_type="application/json")
    assert response.status_code == 202
    settings.ARBOR_RUN_RATE = ""
    for i in range(3):
        Run.objects.filter(session=session).update(status="succeeded")
        response = client.post(
            f"/api/sessions/{session.pk}/runs", data={"input": f"b{i}"}, content_type="application/json",
        )
        assert response.status_code == 202


def test_production_cache_is_shared():
    """With a Redis URL the cache that holds the counts is Redis (shared by every process)."""
    import subprocess
    import sys

    code = ("import django,os;django.setup();from django.conf import settings as s;"
            "print(s.CACHES['default']['BACKEND'])")
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.base", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/5",
           "PATH": "/usr/bin:/bin", "ARBOR_VAR_DIR": "/tmp/arbor-audit"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "django.core.cache.backends.redis.RedisCache"
