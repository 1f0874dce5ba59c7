"""Credentials in every form stay out of run errors, stored rows and logs: an endpoint that echoes
the ``Authorization`` and ``Proxy-Authorization`` headers it got (``Basic dXNlcjpwdw==``) in its
error body leaves no trace of them in any table or the worker's log; a user name and password in a
base URL are refused, and never sent (the HTTP client would send them as Basic credentials in
place of the key)."""

from __future__ import annotations

import json
import logging

import httpx
import openai
import pytest
from django.db import connection as db

from connections.endpoint import Endpoint
from conversations import services
from conversations.models import RunStatus, Step
from core.redact import ScrubCredentials, scrub_credentials
from engine.llm import describe_error
from tests.support.factories import AgentFactory, ConnectionFactory, SessionFactory
from tests.support.processes import wait_for

BASIC = "Basic dXNlcjpwdw=="  # user:pw
PROXY = "Basic cHJveHk6c2VjcmV0"  # proxy:secret


@pytest.mark.parametrize(("text", "kept"), [
    (f"{{'Authorization': '{BASIC}', 'Proxy-Authorization': '{PROXY}'}}", "Authorization"),
    (f'"authorization": "{BASIC}"', "authorization"),
    (f"Authorization: {BASIC}\r\nHost: x", "Host: x"),
    ("proxy_authorization=Bearer sk-live-abcdef123", "proxy_authorization="),
    ('Authorization: Digest username="bob", realm="r", response="6629fae4"', "Authorization: "),
    ("GET http://user:pw@10.0.0.1:8001/v1/models", "http://user:***@10.0.0.1:8001"),
    (f"header was {BASIC} then", "header was Basic ***"),
    ("Bearer sk-proj-AbC123xyz", "Bearer ***"),
])
def test_credentials_in_any_form_are_masked(text, kept):
    cleaned = scrub_credentials(text)
    for secret in ("dXNlcjpwdw==", "cHJveHk6c2VjcmV0", "sk-live-abcdef123", "6629fae4", ":pw@", "AbC123xyz"):
        assert secret not in cleaned
    assert kept in cleaned


def test_prose_is_left_alone():
    text = "Basic authentication failed; the Authorization header is missing. Bearer tokens expire."
    assert scrub_credentials(text) == text


def _status_error(body: str) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx.Response(401, request=request, text=body)
    return openai.AuthenticationError("rejected", response=response, body=None)


def test_a_run_error_quotes_no_credential_and_no_body_for_a_restricted_endpoint():
    echo = f"rejected credentials {{'Authorization': '{BASIC}', 'Proxy-Authorization': '{PROXY}'}}"
    trusted = Endpoint(name="shared", base_url="http://127.0.0.1:9/v1")
    kind, message = describe_error(_status_error(echo), trusted)
    assert kind == "http_error" and "rejected credentials" in message
    assert "dXNlcjpwdw" not in message and "cHJveHk6" not in message
    own = Endpoint(name="mine", base_url="http://127.0.0.1:9/v1", restricted=True)
    _, message = describe_error(_status_error(echo), own)
    assert message == "The connection “mine” (http://127.0.0.1:9/v1) answered HTTP 401."


def test_the_log_filter_masks_messages_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sent %s to %s", (BASIC, "http://u:pw@h/v1"), None)
    try:
        raise RuntimeError(f"echo {PROXY}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert ScrubCredentials().filter(record)
    line = logging.Formatter().format(record)
    assert "dXNlcjpwdw" not in line and ":pw@" not in line and "cHJveHk6" not in line
    assert "sent Basic *** to http://u:***@h/v1" in line and "RuntimeError: echo Basic ***" in line


@pytest.mark.django_db
def test_a_url_with_a_password_is_refused(api, llm_server):
    url = llm_server.base_url.replace("http://", "http://user:pw@")
    response = api.post("/api/connections", {"name": "basic", "base_url": url}, content_type="application/json")
    assert response.status_code == 400 and "Authorization" in response.json()["detail"]
    assert llm_server.state.model_list_calls == 0


@pytest.mark.django_db
def test_a_password_in_an_old_rows_url_is_not_sent(user, llm_server):
    connection = ConnectionFactory(owner=user, name="legacy",
                                   base_url=llm_server.base_url.replace("http://", "http://user:pw@"),
                                   api_key="sk-legacy-key-1234")
    from connections.services import connection_check

    connection_check(connection=connection)
    assert llm_server.state.model_list_auth == ["Bearer sk-legacy-key-1234"]


def _rows_containing(needles: list[str]) -> list[str]:
    """``table: needle`` for every row of every table of the test database whose text holds a needle."""
    found = []
    with db.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cursor.fetchall():
            for needle in needles:
                cursor.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s', [f"%{needle}%"])
                if cursor.fetchone()[0]:
                    found.append(f"{table}: {needle}")
    # Steps keep their request and response deflated (core.fields.PackedJSONField): read unpacked.
    for step in Step.objects.values("request", "response", "error"):
        text = json.dumps(step)
        found += [f"conversations_step (unpacked): {needle}" for needle in needles if needle in text]
    return found


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_endpoint_echoing_credentials_leaves_them_nowhere(celery_worker, llm_server, user, superuser):
    """A shared connection (its errors quote the answer's body) sends Basic credentials in its
    extra headers; the endpoint answers 401 quoting them. The run fails with a readable error, and
    no table row and no worker log line holds them."""
    shared = ConnectionFactory(owner=None, name="Echoing", base_url=llm_server.base_url,
                               extra_headers=json.dumps({"Authorization": BASIC, "Proxy-Authorization": PROXY}))
    agent = AgentFactory(owner=user, name="echo", connection=shared, model="fake-model")
    run = services.run_start(session=SessionFactory(owner=user), agent=agent, input="[[echo_auth:401]] hello")
    run = wait_for(lambda: (r := type(run).objects.get(pk=run.pk)).is_finished and r, 60, message="the run")
    assert run.status == RunStatus.FAILED and run.error_type == "http_error"
    assert "answered HTTP 401" in run.error_message and "rejected credentials" in run.error_message
    received = [r["authorization"] for r in llm_server.requests]
    assert BASIC in received  # they were sent (the connection asked for it) ...
    assert _rows_containing(["dXNlcjpwdw", "cHJveHk6c2VjcmV0"]) == []  # ... and stored nowhere
    log = celery_worker.output()
    assert "dXNlcjpwdw" not in log and "cHJveHk6c2VjcmV0" not in log
