"""Under a real ASGI server (uvicorn), the audit context still knows who acts and from where."""

from __future__ import annotations

import re

import httpx
import pytest

from audit.models import AuditLog


@pytest.mark.django_db(transaction=True)
def test_actions_over_asgi_are_attributed_with_ip_and_user_agent(asgi_server):
    """Log in and create a session through uvicorn: the rows carry the user, 127.0.0.1 and the
    user agent (the context variable crosses from the async middleware into the sync view)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("asgi-user", password="pw-123456")
    headers = {"User-Agent": "asgi-audit-test/1"}
    with httpx.Client(base_url=asgi_server, headers=headers, timeout=20) as http:
        page = http.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = http.post("/accounts/login/", data={"username": "asgi-user", "password": "pw-123456",
                                                       "csrfmiddlewaretoken": token})
        assert response.status_code == 302
        response = http.post("/s/new", data={"title": "over asgi"}, headers={"X-CSRFToken": http.cookies["csrftoken"]})
        assert response.status_code in (302, 303)
    login = AuditLog.objects.get(action="auth.login", actor=user)
    created = AuditLog.objects.get(action="session.create", actor=user)
    for row in (login, created):
        assert row.ip == "127.0.0.1" and row.user_agent == "asgi-audit-test/1"
    assert created.details["title"] == "over asgi" and created.path == "/s/new"
