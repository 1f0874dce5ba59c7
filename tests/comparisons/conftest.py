"""Fixtures for comparison tests: a session with a finished chain of runs, and a way to finish a
queued run without a worker (for page and vote tests that do not need real generation)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Message, Role, Run, RunStatus
from tests.support.factories import SessionFactory, build_chain
from tests.support.processes import launch_chromium

# Playwright's sync API runs an event loop in the test thread; Django's ORM calls in the same
# thread would otherwise refuse to run ("You cannot call this from an async context").
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def finish_run(run: Run, text: str = "an answer", *, status: str = RunStatus.SUCCEEDED, prompt_tokens: int = 10,
               completion_tokens: int = 5, ttft: float = 0.25, latency: float = 1.5) -> Run:
    """Mark a queued run finished as a worker would: answer message, usage and timings."""
    start = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=status, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        started_at=start, first_token_at=start + timedelta(seconds=ttft),
        finished_at=start + timedelta(seconds=latency),
        error_type="http_error" if status == RunStatus.FAILED else "",
        error_message="boom" if status == RunStatus.FAILED else "",
    )
    Message.objects.update_or_create(run=run, position=1, defaults={"role": Role.ASSISTANT, "content": text})
    run.refresh_from_db()
    return run


@pytest.fixture
def chain(user):
    """A session of ``user`` with five finished runs in a line (inputs "question 0" … "question 4")."""
    session = SessionFactory(owner=user)
    runs = build_chain(session, 5)
    return session, runs


ARTIFACTS = __import__("pathlib").Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    """A page in a fresh context; console errors (CSP violations among them) land in ``page.problems``."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.problems = []
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.bad_responses = []
    page.on("response", lambda r: page.bad_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield page
    context.close()


def login(page, base_url: str, user) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-123456")
    page.click("form button[type=submit]")
    page.wait_for_load_state()
