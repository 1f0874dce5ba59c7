"""Evaluation in a real browser (Debian's Chromium via Playwright; Arbor under uvicorn, a real Celery
worker and the scripted model server): a 5-prompt suite run on two agents, judged with a rubric by a
judge model that always prefers the first answer (caught as position-biased) while the judging page
streams its progress, 5 pairs voted by hand, the judge against the votes (agreement, κ), raw and
style-controlled ratings, votes needed, and a second suite run, voted by hand too, on the trend chart;
axe-core at 1280 and 390 px (0 serious or critical).

axe-core is the vendored copy (tests/vendor/axe-core) injected with ``page.add_script_tag``, which
the site's CSP refuses: only the axe context is opened with ``bypass_csp=True``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from comparisons.models import Comparison, Judgement, Suite, SuiteRun, VariantRun
from tests.comparisons.conftest import ARTIFACTS, login
from tests.support.factories import AgentFactory, SessionFactory, UserFactory, build_chain
from tests.support.processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe-core" / "axe.min.js"
FIRST_LOVER = "Which answer helps the user more? [[reply:Answer 1 is clearly better. Verdict: 1]]"


def axe(page) -> list[dict]:
    """axe-core's WCAG 2.x A/AA and best-practice violations of the page."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
          const result = await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']},
            resultTypes: ['violations'],
          });
          return result.violations.map(v => ({id: v.id, impact: v.impact, count: v.nodes.length,
            nodes: v.nodes.slice(0, 4).map(n => n.target.join(' '))}));
        }"""
    )


def all_answered(suite_run: SuiteRun, n: int) -> None:
    wait_for(lambda: VariantRun.objects.filter(variant__comparison__suite_run=suite_run,
                                               run__status="succeeded").count() == n, timeout=120,
             message=f"{n} answers of the suite run")


def test_suite_judge_votes_agreement_style_and_trend(page, browser, asgi_server, celery_worker):
    user = UserFactory()
    session = SessionFactory(owner=user, title="Regression chat")
    runs = build_chain(session, 5)
    AgentFactory(owner=user, name="Baseline", model="model-old")
    AgentFactory(owner=user, name="Challenger", model="model-new")
    AgentFactory(owner=user, name="Judge", model="judge-model")
    login(page, asgi_server, user)

    # Save the 5-turn branch as a suite.
    page.goto(f"{asgi_server}/compare/suites/")
    page.fill("#suite-name", "Five prompts")
    page.check(f"input[name=leaves][value='{runs[-1].pk}']")
    page.click("text=Save the suite")
    page.wait_for_url(re.compile(r"/compare/suites/\d+/$"))
    expect(page.locator("h1")).to_contain_text("Five prompts")
    suite = Suite.objects.get(owner=user)
    assert suite.cases.get().prompts == [f"question {i}" for i in range(5)]

    # Run it on the two agents, judged with a rubric by a judge that always says "1".
    page.select_option("#baseline", label="Baseline (Default · model-old)")
    page.select_option("#challenger", label="Challenger (Default · model-new)")
    page.select_option("#judge", label="Judge (Default · judge-model)")
    page.select_option("#template", "helpfulness")
    page.fill("#rubric-text", FIRST_LOVER)
    page.screenshot(path=str(ARTIFACTS / "suite-run-form.png"), full_page=True)
    with page.expect_navigation():
        page.get_by_role("button", name="Run the suite").click()
    expect(page.locator(".error")).to_have_count(0)
    first_run = SuiteRun.objects.get(suite=suite)
    all_answered(first_run, 10)
    comparison = Comparison.objects.get(suite_run=first_run)
    judging = wait_for(lambda: comparison.judgings.first(), 60, message="the judging")

    # The judging page streams its progress (Server-Sent Events): no reload, no polling.
    page.goto(f"{asgi_server}/compare/{comparison.pk}/judgings/{judging.pk}/")
    page.evaluate("window.sameDocument = true")
    expect(page.locator("#judging-progress")).to_contain_text("10 of 10", timeout=120_000)
    assert page.evaluate("window.sameDocument === true"), "the progress came in over the stream"
    assert Judgement.objects.filter(judging=judging, recorded_at__isnull=False).count() == 10

    # Vote on the 5 pairs by hand (blind): the challenger's column wins 4, the baseline's 1.
    page.goto(f"{asgi_server}/compare/{comparison.pk}/")
    challenger_letter = "A" if comparison.column_order[0] == 1 else "B"
    baseline_letter = "B" if challenger_letter == "A" else "A"
    for turn in range(5):
        letter = baseline_letter if turn == 2 else challenger_letter
        panel = page.locator(f"#vote-{turn}")
        panel.get_by_role("button", name=f"{letter} is better").click()
        expect(page.locator(f"#vote-{turn} .voted")).to_be_visible()
    expect(page.locator(".badge.revealed")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "suite-case-voted.png"), full_page=True)

    # The judging page: the first-position judge is caught.
    page.goto(f"{asgi_server}/compare/{comparison.pk}/judgings/{judging.pk}/")
    expect(page.locator("#judging-progress")).to_contain_text("10 of 10")
    expect(page.locator("#position-bias")).to_contain_text("This judge is position-biased")
    expect(page.locator("#position-bias")).to_contain_text("won 10 of 10 decisive verdicts")
    expect(page.locator("#position-bias")).to_contain_text("5 of 5 pairs flipped")
    expect(page.locator("#judge-agreement")).to_contain_text("The judge agrees with your votes 0 % of the time over 5")
    page.screenshot(path=str(ARTIFACTS / "judging-position-biased.png"), full_page=True)

    # The results: judge against people, ratings by source, raw and controlled, votes needed.
    page.goto(f"{asgi_server}/compare/results/")
    expect(page.locator("#agreement-sentence")).to_contain_text("κ")
    expect(page.locator("#agreement-sentence")).to_contain_text("over 5 pairs")
    expect(page.locator("table.confusion")).to_be_visible()
    expect(page.locator("#ratings-by-source")).to_contain_text("Challenger")
    expect(page.locator("#style-ratings thead")).to_contain_text("Style-controlled")
    expect(page.locator("#style-ratings tbody tr")).to_have_count(2)
    expect(page.locator("#votes-needed")).to_contain_text("Challenger against Baseline: 4–1.")
    expect(page.locator("#votes-needed")).to_contain_text("more decisive votes at this win rate")
    expect(page.locator("#judge-position")).to_contain_text("position-biased")
    page.screenshot(path=str(ARTIFACTS / "results-evaluation.png"), full_page=True)

    # A second run of the suite (no judge); its 5 pairs voted by hand from the runs table, then the trend.
    page.goto(f"{asgi_server}/compare/suites/{suite.pk}/")
    page.select_option("#baseline", label="Baseline (Default · model-old)")
    page.select_option("#challenger", label="Challenger (Default · model-new)")
    with page.expect_navigation():
        page.get_by_role("button", name="Run the suite").click()
    expect(page.locator(".error")).to_have_count(0)
    second_run = SuiteRun.objects.filter(suite=suite).latest("created_at")
    all_answered(second_run, 10)
    second = Comparison.objects.get(suite_run=second_run)
    page.reload()
    with page.expect_navigation():
        page.locator("#suite-runs tbody tr").nth(1).get_by_role("link", name="vote 1").click()
    challenger_letter = "A" if second.column_order[0] == 1 else "B"
    for turn in range(5):  # the challenger wins all 5
        page.locator(f"#vote-{turn}").get_by_role("button", name=f"{challenger_letter} is better").click()
        expect(page.locator(f"#vote-{turn} .voted")).to_be_visible()
    assert second.votes.count() == 5
    page.goto(f"{asgi_server}/compare/suites/{suite.pk}/")
    expect(page.locator("#suite-runs tbody tr")).to_have_count(2)
    expect(page.locator("#suite-runs tbody tr").nth(0)).to_contain_text("4–1–0")
    expect(page.locator("#suite-runs tbody tr").nth(1)).to_contain_text("5–0–0")
    expect(page.locator("#trend g.series circle")).to_have_count(2)
    expect(page.locator("#trend-legend li")).to_have_text(["Challenger"])
    expect(page.locator("#trend-sentence")).to_contain_text("from 80% to 100%: not a significant change")
    expect(page.locator("#trend-sentence")).to_contain_text("Fisher's exact test")
    page.screenshot(path=str(ARTIFACTS / "suite-trend.png"), full_page=True)
    assert not page.problems, page.problems

    # axe at both widths on every new page.
    pages = [f"/compare/suites/{suite.pk}/", "/compare/suites/", f"/compare/{comparison.pk}/judge/",
             f"/compare/{comparison.pk}/judgings/{judging.pk}/", "/compare/results/"]
    for width, height in ((1280, 800), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        checker = context.new_page()
        checker.set_default_timeout(20_000)
        login(checker, asgi_server, user)
        for path in pages:
            checker.goto(f"{asgi_server}{path}")
            bad = [v for v in axe(checker) if v["impact"] in ("serious", "critical")]
            assert not bad, f"{path} at {width}px: {bad}"
            overflow = checker.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} at {width}px scrolls sideways by {overflow}px"
        name = "suite-trend" if width == 1280 else "suite-trend-390"
        checker.goto(f"{asgi_server}/compare/suites/{suite.pk}/")
        checker.screenshot(path=str(ARTIFACTS / f"{name}-axe.png"), full_page=True)
        checker.goto(f"{asgi_server}/compare/results/")
        checker.screenshot(path=str(ARTIFACTS / f"results-evaluation-{width}.png"), full_page=True)
        context.close()
