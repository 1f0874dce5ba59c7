"""Branch points in the chat, in real Chromium: markers and the panel jump to the right turn (on the
page, and above the turns shown), keys move between turns, branch points and versions, the keys
are listed behind "?", and without JavaScript everything is a plain link."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Run, Session
from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _talk(user) -> tuple[Session, list[Run], dict]:
    """40 turns; other versions of turns 5, 20 and 35 (the chat shows the newest 30 turns: 11–40)."""
    session = SessionFactory(owner=user, title="Branch points")
    runs = build_chain(session, 40)
    other = {n: RunFactory(session=session, parent_run=runs[n - 2], turn=(f"another turn {n}", f"other answer {n}"))
             for n in (5, 20, 35)}
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    session.refresh_from_db()
    return session, runs, other


def turn(page, run):
    return page.locator(f"#turn-{run.pk}")


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] < height and box["y"] + min(box["height"], 40) > 0


def focused_turn(page) -> str | None:
    return page.evaluate("() => { const t = document.activeElement && document.activeElement.closest('article.turn');"
                         " return t ? t.getAttribute('data-run-id') : null; }")


def test_markers_and_the_panel_jump_to_the_right_turn(page, asgi_server, artifacts):
    user = UserFactory()
    session, runs, _ = _talk(user)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    panel = page.locator("#branch-points")
    expect(panel.locator("li > a")).to_have_count(3)
    expect(panel.locator("li > a").nth(0)).to_contain_text("Turn 5")
    expect(panel.locator("li > a").nth(0)).to_contain_text("1/2")
    expect(page.locator("article.turn .bp-marker")).to_have_count(2)  # turns 20 and 35 are on the page
    # a marker links to its panel entry
    turn(page, runs[34]).locator(".bp-marker").click()
    assert page.url.endswith(f"#bp-{runs[34].pk}")
    expect(page.locator(f"#bp-{runs[34].pk}")).to_be_in_viewport()
    page.screenshot(path=str(artifacts / "branch-points.png"))
    # the panel sits in the sessions sidebar
    page.locator("#branch-points").screenshot(path=str(artifacts / "branch-points-panel.png"))
    # a panel entry of a turn on the page: a jump within the page, the turn focused
    with page.expect_event("framenavigated", timeout=1000) as nav:
        panel.get_by_role("link", name=re.compile("Turn 20")).click()
    assert nav.value.url.endswith(f"#turn-{runs[19].pk}")  # only the anchor changed
    assert in_view(page, turn(page, runs[19]))
    assert focused_turn(page) == str(runs[19].pk)
    # a panel entry of a turn above the ones first shown (by now older turns may have loaded on
    # scroll: then it is a jump within the page, else the link loads the chat reaching back to it)
    panel.get_by_role("link", name=re.compile("Turn 5")).click()
    page.wait_for_url(re.compile(rf"#turn-{runs[4].pk}$"))
    expect(turn(page, runs[4])).to_be_in_viewport()
    page.wait_for_function(f"() => document.activeElement && document.activeElement.id === 'turn-{runs[4].pk}'")
    expect(page.locator("#branch-points a.current")).to_contain_text("Turn 5")
    page.screenshot(path=str(artifacts / "branch-points-jump.png"))
    assert not page.problems, page.problems


def test_a_branch_point_far_above_opens_the_page_that_shows_it(page, asgi_server):
    user = UserFactory()
    session = SessionFactory(owner=user)
    runs = build_chain(session, 300)
    RunFactory(session=session, parent_run=runs[8], turn=("another turn 10", "x"))
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    page.locator("#branch-points li > a").click()
    page.wait_for_url(re.compile(rf"/older\?before={runs[10].pk}#turn-{runs[9].pk}$"))
    expect(turn(page, runs[9])).to_be_in_viewport()
    assert not page.problems, page.problems


def test_keys_move_between_turns_branch_points_and_versions(page, asgi_server, artifacts):
    user = UserFactory()
    session, runs, other = _talk(user)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/#turn-{runs[36].pk}")
    assert focused_turn(page) == str(runs[36].pk)
    page.keyboard.press("j")
    assert focused_turn(page) == str(runs[37].pk)
    page.keyboard.press("k")
    page.keyboard.press("k")
    assert focused_turn(page) == str(runs[35].pk)
    page.keyboard.press("p")  # the previous branch point: turn 35
    assert focused_turn(page) == str(runs[34].pk)
    assert in_view(page, turn(page, runs[34]))
    page.keyboard.press("p")  # turn 20
    assert focused_turn(page) == str(runs[19].pk)
    page.keyboard.press("n")
    assert focused_turn(page) == str(runs[34].pk)
    # versions of the focused turn: → (or l) opens the next one, ← (or h) the previous one
    with page.expect_response(lambda r: r.request.method == "POST" and "/open" in r.url):
        page.keyboard.press("ArrowRight")
    shown = turn(page, other[35])
    expect(shown).to_contain_text("other answer 35")
    expect(shown.locator(".sib-pos")).to_have_text("2/2")
    expect(page.locator("#branch-points li > a").nth(2)).to_contain_text("2/2")  # the panel follows (out of band)
    assert focused_turn(page) == str(other[35].pk)
    page.keyboard.press("l")  # there is no newer version: nothing happens, it is said
    expect(page.locator(".bp-said")).to_have_text("No newer version.")
    with page.expect_response(lambda r: r.request.method == "POST" and "/open" in r.url):
        page.keyboard.press("h")
    expect(turn(page, runs[34]).locator(".sib-pos")).to_have_text("1/2")
    # keys are listed behind "?"; nothing happens while typing
    page.keyboard.press("?")
    expect(page.locator("#bp-keys")).to_have_attribute("open", "")
    expect(page.locator("#bp-keys")).to_contain_text("next / previous branch point")
    page.screenshot(path=str(artifacts / "branch-points-keys.png"))
    page.locator("#id_input").fill("")
    page.locator("#id_input").type("jnp?")
    expect(page.locator("#id_input")).to_have_value("jnp?")
    # "b" goes to the panel; "p" above the turns shown follows the panel's link
    page.locator("#id_input").blur()
    page.keyboard.press("b")
    assert page.evaluate("() => document.activeElement.matches('#branch-points li > a')")
    turn(page, runs[19]).evaluate("t => { t.setAttribute('tabindex', '-1'); t.focus(); }")
    page.keyboard.press("p")  # turn 5: on the page if older turns have loaded by now, else a link away
    page.wait_for_function(f"() => document.activeElement && document.activeElement.id === 'turn-{runs[4].pk}'")
    expect(turn(page, runs[4])).to_be_in_viewport()
    assert not page.problems, page.problems


def test_branch_points_without_javascript(chromium, asgi_server, artifacts):
    user = UserFactory()
    session, runs, _ = _talk(user)
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        turn(page, runs[34]).locator(".bp-marker").click()
        assert page.url.endswith(f"#bp-{runs[34].pk}")
        page.locator(f"#bp-{runs[4].pk} a").click()
        page.wait_for_url(re.compile(rf"#turn-{runs[4].pk}$"))
        expect(turn(page, runs[4])).to_be_in_viewport()
        page.screenshot(path=str(artifacts / "branch-points-nojs.png"))
    finally:
        context.close()
