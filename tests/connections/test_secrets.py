"""A connection's API key and extra headers: encrypted at rest (always), covered by key rotation,
and never in a page, an API answer, a log line or an audit row."""

from __future__ import annotations

import io
import json
import logging

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.core.management import call_command
from django.db import connection as db
from django.urls import reverse

from audit.models import AuditLog
from connections.models import Connection
from core.fields import PREFIX
from core.redact import mask_secrets, mask_url, scrub
from tests.support.factories import ConnectionFactory

from .conftest import KEY_A

HEADER_SECRET = "hdr-secret-Qm55-do-not-show"


def _raw(pk: int) -> tuple[str, str]:
    with db.cursor() as cursor:
        cursor.execute("SELECT api_key, extra_headers FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()


def _opens(token: str, *keys: str) -> str:
    return MultiFernet([Fernet(k.encode()) for k in keys]).decrypt(token[len(PREFIX):].encode()).decode()


@pytest.mark.django_db
def test_the_stored_key_and_headers_are_not_the_plaintext(user, llm_server, settings):
    """Without ARBOR_MEMORY_ENCRYPTION_KEYS the columns are still ciphertext (a key derived from
    SECRET_KEY); Python sees the plaintext; a SECRET_KEY_FALLBACKS entry still opens them."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = []
    conn = ConnectionFactory(owner=user, name="x", base_url=llm_server.base_url, api_key=KEY_A,
                             extra_headers=json.dumps({"X-Secret": HEADER_SECRET}))
    key_column, headers_column = _raw(conn.pk)
    assert key_column.startswith(PREFIX) and KEY_A not in key_column
    assert headers_column.startswith(PREFIX) and HEADER_SECRET not in headers_column
    fresh = Connection.objects.get(pk=conn.pk)
    assert fresh.api_key == KEY_A and fresh.headers == {"X-Secret": HEADER_SECRET}
    assert not Connection.objects.filter(api_key__contains="conn-a").exists()  # SQL sees only ciphertext

    old_secret = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "another-secret-key-" + "x" * 40, [old_secret]
    assert Connection.objects.get(pk=conn.pk).api_key == KEY_A


@pytest.mark.django_db
def test_rotate_memory_keys_covers_connection_keys(user, llm_server, settings):
    """A key written under the SECRET_KEY-derived key moves to the configured key, then to the next one."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = []
    conn = ConnectionFactory(owner=user, name="x", base_url=llm_server.base_url, api_key=KEY_A)
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [first]
    call_command("rotate_memory_keys", stdout=(out := io.StringIO()))
    assert "connections.Connection.api_key: 1 rows re-encrypted" in out.getvalue()
    assert _opens(_raw(conn.pk)[0], first) == KEY_A  # the configured key alone opens it now

    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [second, first]
    call_command("rotate_memory_keys", stdout=io.StringIO())
    assert _opens(_raw(conn.pk)[0], second) == KEY_A
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [second]
    assert Connection.objects.get(pk=conn.pk).api_key == KEY_A


def test_masking_helpers():
    assert mask_url("https://bob:hunter2@example.com/v1?api-key=abc&x=1") == "https://bob:***@example.com/v1?api-key=***&x=1"
    assert mask_url("http://127.0.0.1:8001/v1") == "http://127.0.0.1:8001/v1"
    assert mask_secrets({"X-Api-Key": "k", "max_tokens": 5, "prompt_tokens": 3, "base_url": "http://u:p@h/v1"}) == {
        "X-Api-Key": "***", "max_tokens": 5, "prompt_tokens": 3, "base_url": "http://u:***@h/v1"}
    assert scrub(f"bad key {KEY_A}!", [KEY_A, "", "ab"]) == "bad key ***!"


@pytest.mark.django_db
def test_no_page_api_answer_log_line_or_audit_row_contains_the_key(client, user, superuser, llm_server, caplog):
    """Add a connection through the page and one through the API, check, refresh, edit; then every
    page, API answer, admin page, audit row and log record (DEBUG and up) is searched for the key
    and the header value."""
    caplog.set_level(logging.DEBUG)
    client.force_login(user)
    bodies: list[str] = []
    response = client.post(reverse("connections:create"), {
        "name": "Page-made", "base_url": llm_server.base_url, "api_key": KEY_A, "enabled": "on",
        "extra_headers": json.dumps({"X-Secret": HEADER_SECRET})})
    assert response.status_code == 302
    page_made = Connection.objects.get(name="Page-made")
    assert page_made.api_key == KEY_A
    response = client.post("/api/connections", {"name": "Api-made", "base_url": llm_server.base_url,
                                                "api_key": KEY_A, "extra_headers": {"X-Secret": HEADER_SECRET}},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    bodies.append(response.content.decode())
    api_made = response.json()["id"]
    for url in (reverse("connections:index"), reverse("connections:detail", args=[page_made.pk]),
                "/api/connections", f"/api/connections/{api_made}"):
        bodies.append(client.get(url).content.decode())
    bodies.append(client.post(f"/api/connections/{api_made}/health").content.decode())
    bodies.append(client.post(f"/api/connections/{api_made}/refresh").content.decode())
    bodies.append(client.post(reverse("connections:health", args=[page_made.pk]), HTTP_HX_REQUEST="true")
                  .content.decode())
    bodies.append(client.post(reverse("connections:detail", args=[page_made.pk]), {
        "name": "Page-made", "base_url": llm_server.base_url, "api_key": KEY_A + "-2", "enabled": "on"},
        follow=True).content.decode())
    assert Connection.objects.get(pk=page_made.pk).api_key == KEY_A + "-2"
    client.force_login(superuser)
    for url in (reverse("admin:connections_connection_changelist"),
                reverse("admin:connections_connection_change", args=[page_made.pk])):
        response = client.get(url)
        assert response.status_code == 200
        bodies.append(response.content.decode())
    assert json.loads(bodies[0])["has_key"] is True
    audit = [json.dumps([row.action, row.target_repr, row.details, row.path]) for row in AuditLog.objects.all()]
    assert AuditLog.objects.filter(action="connection.create").count() == 2
    assert AuditLog.objects.filter(action="connection.change").exists()
    logs = [record.getMessage() for record in caplog.records]
    for text in bodies + audit + logs:
        assert KEY_A not in text and HEADER_SECRET not in text
    assert "X-Secret" in bodies[0]  # header names are shown, never their values
