"""No Content-Security-Policy violation on any main page (issue 15), in real Chromium, on the demo
("Tour of Arbor", loaded by ``manage.py load_demo``) — and the demo's screenshots.

Every document gets a listener for ``securitypolicyviolation`` events before its own scripts run
(``add_init_script``); Chromium's console messages about the policy are collected too. The chat is
checked while a reply streams (htmx swaps, the SSE extension, app.js at work). A first check proves
the listener sees a violation: a page that sets an inline style attribute is caught.

Inline styles set through the CSSOM are allowed, and the browser sets them itself when a textarea is
resized by its grip; htmx used to copy such a ``style`` attribute onto the content it swapped in
(``setAttribute``, refused), so base.html leaves ``style`` out of htmx's ``attributesToSettle``. The
chat check resizes the composer first. (Playwright's screenshots leave ``style=""`` on every input
the same way unless ``caret="initial"``.)
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from comparisons.models import Comparison
from conversations.models import Run, Session
from tests.support.factories import UserFactory
from tests.support.processes import wait_for
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} at `
                    + `${e.sourceFile}:${e.lineNumber}:${e.columnNumber}` + (e.sample ? ` (${e.sample})` : ''));
});
"""


def violations(page, since: int = 0) -> list[str]:
    """What the current document's listener saw, plus Chromium's console messages about the policy
    (those from ``page.problems[since:]``)."""
    seen = page.evaluate("window.__csp || []")
    said = [p for p in page.problems[since:] if "Content Security Policy" in p or "Content-Security-Policy" in p]
    return seen + said


@pytest.fixture
def demo_page(asgi_server, celery_worker, request):
    """A page logged in as the administrator who owns the demo; ``page.problems`` collects console errors."""
    admin = UserFactory(username="admin", is_superuser=True, is_staff=True)  # before Playwright's loop starts
    call_command("load_demo")
    page = request.getfixturevalue("new_page")()
    page.add_init_script(WATCH)
    page.missing = []
    page.on("response", lambda r: page.missing.append(r.url) if r.status == 404 else None)
    login(page, asgi_server, admin)
    return page, asgi_server, admin


def test_the_listener_sees_a_violation(demo_page):
    page, base, _ = demo_page
    page.goto(f"{base}/")
    assert violations(page) == []
    page.evaluate("document.body.setAttribute('style', 'outline: 1px solid red')")  # an inline style attribute
    wait_for(lambda: violations(page), timeout=5, message="the violation to be reported")
    assert violations(page)[0].startswith("style-src-attr blocked inline")


def test_no_csp_violation_on_the_main_pages_and_the_demo_screenshots(demo_page, artifacts):
    page, base, admin = demo_page
    tour = Session.objects.get(owner=admin, title="Tour of Arbor")
    fork = Session.objects.get(owner=admin, title="Tour of Arbor (fork)")
    comparison = Comparison.objects.get(session=tour)
    found: dict[str, list[str]] = {}
    problems: dict[str, list[str]] = {}  # console errors of any kind, by page

    def visit(name: str, path: str, ready: str, screenshot: str | None = None) -> None:
        since = len(page.problems)
        page.goto(f"{base}{path}")
        expect(page.locator(ready).first).to_be_visible()
        page.wait_for_load_state("networkidle")
        if screenshot:
            page.screenshot(path=str(artifacts / screenshot), full_page=True, caret="initial")
        found[name] = violations(page, since)
        problems[name] = page.problems[since:]

    visit("session list", "/", "text=Tour of Arbor (fork)", "demo-sessions.png")
    visit("tree", f"/s/{tour.pk}/tree/", ".tree", "demo-tree.png")
    visit("comparison", f"/compare/{comparison.pk}/", "text=Detailed", "demo-comparison.png")
    visit("comparisons", "/compare/", f"a[href='/compare/{comparison.pk}/']")
    visit("results", "/compare/results/", "text=Short", "demo-results.png")
    visit("new comparison", f"/compare/new/{tour.pk}/{tour.active_run_id}/", "form")
    visit("memory search", "/memory/search/?q=fork", "text=What is a fork?")
    visit("memory branch", f"/memory/branch/{tour.active_run_id}/", "text=Tour of Arbor")
    visit("import", "/archive/", "input[type=file]")
    visit("run audit", f"/audit/runs/{tour.active_run_id}/", "main")
    visit("audit log", "/admin/audit/auditlog/", "#result_list")
    visit("fork", f"/s/{fork.pk}/", "text=I forked the tour here")

    since = len(page.problems)
    page.goto(f"{base}/s/{tour.pk}/")  # the chat, while a reply streams
    expect(page.locator(".summary-marker").first).to_be_visible()
    page.screenshot(path=str(artifacts / "demo-chat.png"), full_page=True, caret="initial")
    page.evaluate("document.querySelector('#id_input').style.height = '7rem'")  # as dragging its grip does
    page.fill("#id_input", "Show me the tree again [[tokens:120]] [[delay:0.04]]")
    page.click(".composer button.send")
    expect(page.locator(".streaming .stream-text")).to_contain_text("w10", timeout=20_000)
    found["chat while streaming"] = violations(page, since)
    wait_for(lambda: not Run.objects.filter(session=tour, status__in=["queued", "running"]).exists(), timeout=30,
             message="the reply to finish")
    expect(page.locator(".streaming")).to_have_count(0, timeout=20_000)
    expect(page.locator("article.turn").last).to_contain_text("w119")
    found["chat after the reply"] = violations(page, since)
    problems["chat"] = page.problems[since:]

    assert {name: v for name, v in found.items() if v} == {}, found
    assert len(found) == 14
    # The two pages on Django's admin templates link no favicon: Chromium's own request for /favicon.ico
    # (which Playwright does not see) gives the only console errors, on those pages.
    assert page.missing == [], page.missing
    others = {name: p for name, p in problems.items() if p}
    assert set(others) <= {"run audit", "audit log"}, problems
    assert {m for p in others.values() for m in p} <= {
        "Failed to load resource: the server responded with a status of 404 (Not Found)"}, problems
