"""A blind two-variant comparison in a real browser (Debian's Chromium via Playwright) against
Arbor under uvicorn, a real Celery worker and the scripted model server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from comparisons.models import Comparison, Vote
from tests.comparisons.conftest import ARTIFACTS, login
from tests.support.factories import SessionFactory, UserFactory, build_chain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = ("Alpha-Config", "Beta-Config")


def test_blind_comparison_vote_and_results(page, asgi_server, celery_worker):
    """Start a blind comparison from a run, watch both columns stream side by side without any
    label, vote "A is better", see the labels revealed, then the results page with the chart."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Trees")
    runs = build_chain(session, 2)
    login(page, asgi_server, user)

    page.goto(f"{asgi_server}/compare/new/{session.pk}/{runs[1].pk}/")
    expect(page.locator("h1")).to_contain_text("Compare from turn 2")
    page.fill("#id_prompt", "Name three trees [[tokens:40]] [[delay:0.06]]")
    page.fill("#id_v0-label", LABELS[0])
    page.fill("#id_v0-model", "model-alpha")
    page.fill("#id_v0-temperature", "0.2")
    page.fill("#id_v1-label", LABELS[1])
    page.fill("#id_v1-model", "model-beta")
    page.fill("#id_v1-system_prompt", "Answer in one line.")
    expect(page.locator("#id_blind")).to_be_checked()
    page.fill("#id_tags", "browser")
    page.screenshot(path=str(ARTIFACTS / "compare-start-form.png"), full_page=True)
    page.click("button.start")
    page.wait_for_url(re.compile(r"/compare/[0-9a-f-]+/$"))

    # Both columns stream at once; the page names no variant.
    streams = page.locator(".cell.streaming .stream-text")
    expect(streams).to_have_count(2)
    expect(streams.nth(0)).to_contain_text("w3")
    expect(streams.nth(1)).to_contain_text("w3")
    html = page.content()
    for secret in LABELS + ("model-alpha", "model-beta", "Answer in one line."):
        assert secret not in html
    page.screenshot(path=str(ARTIFACTS / "compare-side-by-side-streaming.png"), full_page=True)

    # When both are done, the cells show their facts and the vote panel offers the choices.
    expect(page.locator(".cell.done")).to_have_count(2, timeout=30_000)
    expect(page.locator(".cell.done .content").nth(0)).to_contain_text("w39")
    expect(page.locator(".metrics").nth(1)).to_contain_text("First token")
    vote_a = page.get_by_role("button", name="A is better")
    expect(vote_a).to_be_visible()
    html = page.content()
    for secret in LABELS + ("model-alpha", "model-beta"):
        assert secret not in html
    page.screenshot(path=str(ARTIFACTS / "compare-side-by-side.png"), full_page=True)

    page.fill("#note-0", "more specific")
    vote_a.click()
    expect(page.locator(".badge.revealed")).to_be_visible()
    comparison = Comparison.objects.get(owner=user)
    left_label = LABELS[comparison.column_order[0]]
    expect(page.locator(".voted")).to_contain_text(f"#1 A ({left_label})")
    expect(page.locator(".column-head").nth(0)).to_contain_text(left_label)
    vote = Vote.objects.get(comparison=comparison)
    assert vote.note == "more specific" and vote.ranks.get(rank=1).variant.label == left_label
    page.screenshot(path=str(ARTIFACTS / "compare-revealed.png"), full_page=True)

    page.click("text=Results")
    page.wait_for_url(re.compile(r"/compare/results/"))
    table = page.locator("table.results")
    expect(table).to_contain_text(LABELS[0])
    expect(table).to_contain_text(LABELS[1])
    expect(table.locator("tbody tr").first).to_contain_text(left_label)  # the winner ranks first
    expect(page.locator("figure.chart svg rect")).to_have_count(2)
    page.screenshot(path=str(ARTIFACTS / "compare-results.png"), full_page=True)
    assert not [p for p in page.problems if "Content Security Policy" in p or "Refused" in p], page.problems
    assert page.bad_responses == [], page.bad_responses


def test_replay_streams_turn_after_turn(page, asgi_server, celery_worker):
    """A replay of two user turns: the second turn's cells wait, then stream once each column's
    first turn is done; the column totals follow; every prompt gets its own vote."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Replay")
    runs = build_chain(session, 4)
    from conversations.models import Message

    for run in runs[2:]:
        Message.objects.filter(run=run, position=0).update(content=f"{run.depth}: go on [[tokens:25]] [[delay:0.04]]")
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/compare/new/{session.pk}/{runs[1].pk}/")
    page.check("input[name=mode][value=replay]")
    expect(page.locator("#id_source_run")).to_be_visible()
    expect(page.locator("#id_prompt")).to_be_hidden()
    page.select_option("#id_source_run", str(runs[3].pk))
    page.uncheck("#id_blind")
    page.fill("#id_v0-label", "fast")
    page.fill("#id_v1-label", "careful")
    page.fill("#id_v1-model", "model-careful")
    page.click("button.start")
    page.wait_for_url(re.compile(r"/compare/[0-9a-f-]+/$"))
    expect(page.locator(".column-head").nth(1)).to_contain_text("careful")  # not blind: labels shown
    expect(page.locator("#turn-2 .cell.pending")).to_have_count(2)
    page.screenshot(path=str(ARTIFACTS / "compare-replay-turn1.png"), full_page=True)
    expect(page.locator(".cell.done")).to_have_count(4, timeout=40_000)
    expect(page.locator("#totals")).to_contain_text("2 of 2 answers")
    for turn in (1, 2):
        page.locator(f"#turn-{turn}").get_by_role("button", name="Tie" if turn == 1 else "B is better").click()
        expect(page.locator(f"#turn-{turn} .voted")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "compare-replay-done.png"), full_page=True)
    comparison = Comparison.objects.get(owner=user)
    assert list(comparison.votes.order_by("turn").values_list("choice", flat=True)) == ["tie", "b_better"]
    assert page.bad_responses == [], page.bad_responses
