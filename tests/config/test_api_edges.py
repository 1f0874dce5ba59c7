"""The API's edges speak JSON: an unknown route under /api/ (any method, logged in or not) is a
JSON 404; the schema and docs answer anonymous clients with a JSON 401, never an HTML redirect;
pages during an outage of PostgreSQL or Redis get a friendly 503 page, the API a JSON 503."""

from __future__ import annotations

import pytest
import redis.exceptions
from django.db import OperationalError
from django.test import Client

from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/api/runs/0b8c7c8e-0000-4000-8000-000000000000/frobnicate"), ("get", "/api/nothing-here"),
    ("delete", "/api/sessions/x/y/z"), ("get", "/api/"), ("put", "/api/connections/1/frobnicate"),
])
@pytest.mark.parametrize("logged_in", [True, False])
def test_unknown_api_routes_are_json_404(client, user, method, path, logged_in):
    if logged_in:
        client.force_login(user)
    response = getattr(client, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "No API route" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/api/openapi.json", "/api/docs"])
def test_schema_and_docs_answer_anonymous_clients_with_json_401(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


@pytest.mark.parametrize("path", ["/api/openapi.json", "/api/docs"])
def test_schema_and_docs_open_with_a_login_or_a_token(client, user, api_token, path):
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {api_token}").status_code == 200
    client.force_login(user)
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("error", [OperationalError("the database is down"),
                                   redis.exceptions.ConnectionError("Redis is down")])
def test_a_page_during_an_outage_is_a_friendly_503(user, monkeypatch, error):
    from conversations.views import sessions as views

    def down(*args, **kwargs):
        raise error

    monkeypatch.setattr(views, "render", down)
    browser = Client(raise_request_exception=False)
    browser.force_login(user)
    response = browser.get("/")
    assert response.status_code == 503
    assert response["Retry-After"]
    assert b"Back in a moment" in response.content


def test_an_outage_in_a_middleware_is_a_503_too(user, monkeypatch):
    """The session lookup (a middleware, before any view) fails: still the 503 page, and JSON under /api/."""
    from django.contrib.sessions.backends import db

    def down(self, *args, **kwargs):
        raise OperationalError("connection refused")

    browser = Client(raise_request_exception=False)
    browser.force_login(user)
    monkeypatch.setattr(db.SessionStore, "load", down)
    page = browser.get("/")
    assert page.status_code == 503 and b"Back in a moment" in page.content
    api = browser.get("/api/sessions")
    assert api.status_code == 503 and api.json()["detail"]


def test_unknown_top_level_fields_are_a_400_naming_them(api, user):
    from conversations.models import Session

    session = Session.objects.create(owner=user, title="t")
    response = api.post(f"/api/sessions/{session.pk}/runs", {"input": "hi", "variants": [{"model": "x"}]},
                        content_type="application/json")
    assert response.status_code == 400
    assert "variants" in response.json()["detail"]
    assert not session.runs.exists()


@pytest.mark.parametrize("body", [{"completion_price": False}, {"prompt_price": True}, {"context_window": True},
                                  {"context_window": "4096"}])
def test_bools_and_strings_are_not_numbers(api, user, body):
    from connections.models import ConnectionModel

    connection = ConnectionFactory(owner=user, name="c", base_url="http://127.0.0.1:9/v1")
    model = ConnectionModel.objects.create(connection=connection, name="m")
    response = api.patch(f"/api/connections/{connection.pk}/models/{model.pk}", body, content_type="application/json")
    assert response.status_code == 400, response.content
    model.refresh_from_db()
    assert model.completion_price is None and model.prompt_price is None and model.context_window is None


def test_the_schema_says_no_additional_properties(api):
    schemas = api.get("/api/openapi.json").json()["components"]["schemas"]
    assert schemas["ConnectionIn"]["additionalProperties"] is False
    assert schemas["RunIn"]["additionalProperties"] is False


def test_web_processes_wait_5_s_for_a_database_connection_workers_30():
    """The ASGI entry point shortens the pool timeout (a request gets its 503 after 5 s of an
    outage, not 30); a worker process keeps the default."""
    import os
    import subprocess
    import sys

    code = ("import {module}; from django.conf import settings; "
            "print(settings.DATABASES['default'].get('OPTIONS', {{}}).get('pool', {{}}).get('timeout'))")
    env = {k: v for k, v in os.environ.items() if k not in ("ARBOR_DB_POOL_TIMEOUT", "ARBOR_WEB_DB_POOL_TIMEOUT")}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    web = subprocess.run([sys.executable, "-c", code.format(module="config.asgi")], env=env,
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    worker = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code.format(module="config")],
                            env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
    if worker == "None":
        pytest.skip("no connection pool (SQLite)")
    assert (float(web), float(worker)) == (5.0, 30.0)
