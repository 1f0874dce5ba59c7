"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser).

Playwright lives for one test (started after the test database is set up, stopped before it is
flushed); Django's async-safety check is switched off only while a browser test's body runs (the
hook in tests/conftest.py, for browser tests in every folder).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import launch_chromium

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def chromium():
    with launch_chromium() as browser:
        yield browser


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.ui_failed = report.failed
    return report


@pytest.fixture
def new_page(chromium, request):
    """A factory of pages, each in its own browser context (own cookies); console errors and CSP
    violations are collected in ``page.problems``."""
    contexts = []

    def make(viewport=(1280, 900), **options):
        """``options``: more ``browser.new_context`` options (``color_scheme``, ``bypass_csp``, …)."""
        context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]}, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.problems = []
        page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        return page

    yield make
    if getattr(request.node, "ui_failed", False):  # what the browser showed when the test failed
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for i, context in enumerate(contexts):
            for j, p in enumerate(context.pages):
                p.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}-{i}-{j}.png"), full_page=True)
                print(f"page {i}.{j} problems: {getattr(p, 'problems', [])}")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def login(page, base_url: str, user) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-123456")
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base_url}/")
