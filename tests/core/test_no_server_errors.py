"""Inputs that used to answer 500 answer a 4xx with a reason and write nothing: NUL and other
control characters in agents, upload file names of 5,000 characters, a multipart body without a
boundary, a NUL in the search box; creating a connection whose check fails in an unexpected way
saves it with a warning (one transaction: a request that fails saves nothing)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from archive.models import ImportJob
from connections.models import Connection
from memory.models import Agent
from tests.support.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field", ["name", "model", "system_prompt", "memory_id"])
@pytest.mark.parametrize("text", ["a\x00b", "\x00", "bell\x07"])
def test_control_characters_in_an_agent_are_a_400(api, user, field, text):
    body = {"name": "ok agent", field: text}
    response = api.post("/api/agents", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
    assert not Agent.objects.filter(owner=user).exists()


def test_nul_in_an_agents_params_and_a_patch_are_400(api, user):
    response = api.post("/api/agents", {"name": "a", "params": {"stop": ["\x00"]}}, content_type="application/json")
    assert response.status_code == 400 and "params" in response.json()["detail"]
    agent = AgentFactory(owner=user, name="kept")
    for body in ({"name": "x\x00"}, {"system_prompt": "\x00"}, {"compaction": {"\x00": 1}}):
        response = api.patch(f"/api/agents/{agent.pk}", body, content_type="application/json")
        assert response.status_code == 400, (body, response.content)
    agent.refresh_from_db()
    assert agent.name == "kept" and agent.system_prompt == ""


def test_a_system_prompt_keeps_its_line_breaks(api, user):
    response = api.post("/api/agents", {"name": "multi", "system_prompt": "one\n\ttwo\r\n"},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    assert Agent.objects.get(owner=user).system_prompt == "one\n\ttwo\r\n"


@pytest.mark.parametrize("name", ["x" * 5000 + ".json", "\x00evil.json", "a/../../b.json", "é" * 3000])
def test_odd_upload_file_names_are_stored_or_refused(api, user, name):
    upload = SimpleUploadedFile(name, b'{"sessions": []}', content_type="application/json")
    response = api.post("/api/imports", {"file": upload})
    assert response.status_code in (202, 400), response.content
    assert response["Content-Type"].startswith("application/json")
    for job in ImportJob.objects.filter(owner=user):
        assert len(job.filename) <= 255 and "\x00" not in job.filename and "/" not in job.filename


def test_multipart_without_a_boundary_is_a_400(api, user):
    response = api.generic("POST", "/api/imports", b"--x\r\n\r\n", content_type="multipart/form-data")
    assert response.status_code == 400, response.content
    assert "boundary" in response.json()["detail"].lower()
    assert not ImportJob.objects.filter(owner=user).exists()


def test_multipart_without_a_boundary_on_the_upload_page_is_a_400(api, user):
    response = api.generic("POST", "/archive/import", b"--x\r\n\r\n", content_type="multipart/form-data")
    assert response.status_code == 400


def test_multipart_without_a_boundary_is_a_400_before_the_csrf_check_too(user):
    """The CSRF check reads the form first (in a middleware, before any view)."""
    browser = Client(enforce_csrf_checks=True, raise_request_exception=False)
    browser.force_login(user)
    response = browser.generic("POST", "/archive/import", b"--x\r\n\r\n", content_type="multipart/form-data")
    assert response.status_code in (400, 403)  # refused, by the parser or the CSRF check: never a 500


@pytest.mark.parametrize("query", ["%00", "a%00b", "%01", "%ff%fe", "x" * 3000])
def test_the_search_box_with_bad_text_is_not_a_500(api, user, query):
    response = api.get(f"/?q={query}")
    assert response.status_code in (200, 400), response.status_code


def test_a_check_that_raises_saves_the_connection_with_a_warning(api, user, llm_server, monkeypatch):
    from connections import services

    def broken(*args, **kwargs):
        raise RuntimeError("the probe broke")

    monkeypatch.setattr(services, "probe", broken)
    response = api.post("/api/connections", {"name": "checked", "base_url": llm_server.base_url},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["warning"].startswith("Saved, but")
    assert Connection.objects.filter(owner=user, name="checked").count() == 1


def test_a_failed_create_saves_nothing(api, user, llm_server, monkeypatch):
    """The row and the check's models are written in one transaction after the check: a failure
    while storing them leaves no connection behind."""
    from connections import services

    def broken(connection, check):
        raise RuntimeError("storing broke")

    monkeypatch.setattr(services, "_store_probe", broken)
    response = api.post("/api/connections", {"name": "half", "base_url": llm_server.base_url},
                        content_type="application/json")
    assert response.status_code == 500
    assert not Connection.objects.filter(owner=user, name="half").exists()
