"""The memory search page in Chromium: the filters (role, dates) narrow the results, htmx swaps
them in, nothing breaks the CSP."""

from __future__ import annotations

import pytest

from tests.support.factories import RunFactory, SessionFactory, UserFactory
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_search_with_a_role_filter(asgi_server, request, artifacts):
    user = UserFactory()  # before Playwright's event loop starts (see conftest)
    servers = SessionFactory(owner=user, title="Servers")
    first = RunFactory(session=servers, turn=("nginx returns 502 bad gateway", "Check the upstream socket."))
    RunFactory(session=servers, parent_run=first, turn=("and the upstream is gunicorn", "Read gunicorn's error log."))
    page = request.getfixturevalue("page")
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/memory/search/")
    page.fill("#id_q", "gunicorn")
    page.check("input[name=mode][value=keyword]")
    page.click("button:has-text('Search')")
    page.wait_for_selector("li.hit")
    assert page.locator("li.hit").count() == 2
    page.select_option("select[name=role]", "user")
    page.click("button:has-text('Search')")
    page.wait_for_function("document.querySelectorAll('li.hit').length === 1")
    hit = page.locator("li.hit")
    assert "and the upstream is gunicorn" in hit.inner_text() and "user" in hit.inner_text()
    assert "role=user" in page.url
    page.screenshot(path=str(artifacts / "memory-search-filters.png"), full_page=True)
    page.fill("input[name=since]", "2999-01-01")
    page.click("button:has-text('Search')")
    page.wait_for_selector("text=No messages match")
    hit_link = f"/memory/branch/{first.pk}/"
    assert page.locator(f"a[href^='{hit_link}']").count() == 0
    assert page.problems == []
