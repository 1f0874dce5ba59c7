"""Branch tools in a real browser (Debian's Chromium under Playwright) against Arbor under uvicorn:
named branches survive a reload and open their branch, the diff shows the changed words, prune
then undo, and a share link shows exactly one branch to an anonymous browser until it is revoked."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import BranchLabel, BranchShare, Prune, Run, Session
from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _turn(page, run: Run):
    return page.locator(f"#turn-{run.pk}")


def _csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


def _word(word: str) -> re.Pattern:
    return re.compile(rf"^\s*{word}\s*$")


def _trip(user) -> dict:
    """A session with a 4-turn start and two versions of turn 5 (Lyon / Nice), each with a follow-up."""
    session = SessionFactory(owner=user, title="Trip planning")
    start = build_chain(session, 4)
    lyon = RunFactory(session=session, parent_run=start[-1], turn=(
        "Plan a weekend in Lyon by train", "Take the early train on Saturday and visit the old town."))
    lyon_2 = RunFactory(session=session, parent_run=lyon, turn=("Where to eat?", "A bouchon near Place Bellecour."))
    nice = RunFactory(session=session, parent_run=start[-1],
                      turn=("Plan a weekend in Nice by bus", "Take the late bus on Friday and visit the old port."))
    nice_2 = RunFactory(session=session, parent_run=nice, turn=("Where to eat?", "A socca stand near the market."))
    Session.objects.filter(pk=session.pk).update(active_run=nice_2)
    session.refresh_from_db()
    return {"session": session, "start": start, "lyon": lyon, "lyon_2": lyon_2, "nice": nice, "nice_2": nice_2}


def test_labels_survive_reload_and_open_their_branch(page, asgi_server, artifacts):
    user = UserFactory()
    trip = _trip(user)
    session = trip["session"]
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    turn = _turn(page, trip["nice"])
    turn.locator("details.more-tools > summary").click()  # the turn's "more" menu (issue 16)
    turn.locator("details.label-tool summary").click()
    turn.locator("details.label-tool input[name=name]").fill("by bus")
    turn.locator("details.label-tool button[type=submit]").click()
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]+/\?at="))
    expect(_turn(page, trip["nice"]).locator(".turn-head .branch-label")).to_have_text("by bus")
    expect(page.locator(".branch-side .label-list")).to_contain_text("by bus")
    page.reload()
    expect(_turn(page, trip["nice"]).locator(".turn-head .branch-label")).to_have_text("by bus")
    page.screenshot(path=str(artifacts / "branches-labels-chat.png"), full_page=True)
    # a second label, on the other version, through the API as a script would
    response = page.request.post(f"{asgi_server}/api/sessions/{session.pk}/labels",
                                 data={"run_id": str(trip["lyon"].pk), "name": "by train"},
                                 headers={"X-CSRFToken": _csrf(page)})
    assert response.status == 201, response.text()
    page.goto(f"{asgi_server}/")
    row = page.locator(f"#session-{session.pk}")
    expect(row.locator(".row-labels .branch-label")).to_have_count(2)
    page.screenshot(path=str(artifacts / "branches-labels-list.png"), full_page=True)
    row.get_by_role("button", name="by train").click()  # opening a label shows its branch
    page.wait_for_url(re.compile(rf"/s/{session.pk}/\?at="))
    expect(page.locator("article.turn").last).to_contain_text("A bouchon near Place Bellecour.")
    assert Session.objects.get(pk=session.pk).active_run_id == trip["lyon_2"].pk
    assert set(BranchLabel.objects.filter(session=session).values_list("name", flat=True)) == {"by bus", "by train"}
    assert not page.problems, page.problems


def test_diff_shows_the_changed_words(page, asgi_server, artifacts):
    user = UserFactory()
    trip = _trip(user)
    session = trip["session"]
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    _turn(page, trip["nice"]).locator("a.versions-diff").click()  # from the sibling navigator
    page.wait_for_url(re.compile(rf"/s/{session.pk}/diff/\?a="))
    expect(page.locator(".diff-common")).to_contain_text("Both branches share 4 turns")
    rows = page.locator("li.diff-row")
    expect(rows).to_have_count(2)
    first = rows.first
    expect(first.locator(".side-a .diff-input del.diff-del")).to_have_text([_word("Nice"), _word("bus")])
    expect(first.locator(".side-b .diff-input ins.diff-ins")).to_have_text([_word("Lyon"), _word("train")])
    expect(first.locator(".side-b .diff-answer ins.diff-ins").first).to_have_text(_word("early train"))
    expect(rows.nth(1)).to_have_class(re.compile(r"\bchanged\b"))
    expect(rows.nth(1).locator(".side-a .diff-input del")).to_have_count(0)  # the same question
    expect(page.locator(".diff-totals .total-turns")).to_have_text(["2", "2"])
    # the changed words are really highlighted: a coloured background
    background = first.locator(".side-b ins.diff-ins").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent")
    page.screenshot(path=str(artifacts / "branches-diff.png"), full_page=True)
    assert not page.problems, page.problems


def test_prune_then_undo(page, asgi_server, artifacts):
    user = UserFactory()
    trip = _trip(user)
    session = trip["session"]
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    expect(page.locator("article.turn")).to_have_count(6)
    turn = _turn(page, trip["nice"])
    turn.locator("details.more-tools > summary").click()  # the turn's "more" menu (issue 16)
    turn.locator("details.prune-tool summary").click()
    turn.locator("details.prune-tool").get_by_role("button", name="Prune from here").click()
    page.wait_for_load_state()
    expect(page.locator(".flash")).to_contain_text("Pruned 2 runs")
    # the Nice branch is gone; the session shows the Lyon branch, without a sibling navigator
    expect(page.locator("article.turn").last).to_contain_text("A bouchon near Place Bellecour.")
    expect(page.locator("text=Plan a weekend in Nice by bus")).to_have_count(0)
    expect(_turn(page, trip["lyon"]).locator(".sib-pos")).to_have_count(0)
    expect(page.locator("#pruned")).to_contain_text("Turn 5 and below (2 runs)")
    page.screenshot(path=str(artifacts / "branches-pruned.png"), full_page=True)
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    expect(page.locator(".tree")).not_to_contain_text("Nice")
    page.go_back()
    page.locator("#pruned").get_by_role("button", name="Undo").click()
    page.wait_for_load_state()
    expect(page.locator(".flash")).to_contain_text("Restored 2 runs")
    expect(page.locator("article.turn").last).to_contain_text("A socca stand near the market.")
    expect(_turn(page, trip["nice"]).locator(".sib-pos")).to_have_text("2/2")
    expect(page.locator("#pruned")).to_have_count(0)
    page.screenshot(path=str(artifacts / "branches-undone.png"), full_page=True)
    assert not Run.objects.filter(pruned_by__isnull=False).exists()
    assert Prune.objects.get(session=session).restored_at is not None
    assert not page.problems, page.problems


def test_a_share_link_shows_one_branch_to_an_anonymous_browser_until_revoked(new_page, asgi_server, artifacts):
    user = UserFactory()
    trip = _trip(user)
    session = trip["session"]
    owner = new_page()
    login(owner, asgi_server, user)
    owner.goto(f"{asgi_server}/s/{session.pk}/")
    turn = _turn(owner, trip["nice_2"])
    turn.locator("details.more-tools > summary").click()  # the turn's "more" menu (issue 16)
    turn.locator("details.share-tool summary").click()
    turn.locator("details.share-tool select").select_option("7")
    turn.locator("details.share-tool").get_by_role("button", name="Make link").click()
    owner.wait_for_url(re.compile(rf"/s/{session.pk}/branches/#share-"))
    share = BranchShare.objects.get(session=session)
    link = owner.locator(f"#share-{share.pk} input.share-link").input_value()
    assert link.startswith(f"{asgi_server}/shared/")
    owner.screenshot(path=str(artifacts / "branches-share-settings.png"), full_page=True)

    anonymous = new_page()  # its own browser context: no cookies, never logged in
    response = anonymous.goto(link)
    assert response.status == 200
    expect(anonymous.locator(".shared-turn")).to_have_count(6)
    expect(anonymous.locator(".shared-branch")).to_contain_text("A socca stand near the market.")
    expect(anonymous.locator(".shared-branch")).not_to_contain_text("Lyon")  # the other branch
    expect(anonymous.locator("main textarea, main form, main button")).to_have_count(0)  # no composer, no actions
    expect(anonymous.locator("a[href*='/tree/'], a[href*='/s/'], a[href*='/memory/']")).to_have_count(0)
    expect(anonymous.locator(".topbar nav")).to_have_count(0)  # not logged in
    anonymous.screenshot(path=str(artifacts / "branches-shared-anonymous.png"), full_page=True)
    assert anonymous.goto(link[:-2] + ("x/" if link[-2] != "x" else "y/")).status == 404  # a wrong token

    owner.locator(f"#share-{share.pk}").get_by_role("button", name="Revoke").click()
    expect(owner.locator(f"#share-{share.pk}")).to_contain_text("revoked")
    response = anonymous.goto(link)
    assert response.status == 404
    expect(anonymous.locator("body")).not_to_contain_text("socca")
    anonymous.screenshot(path=str(artifacts / "branches-shared-revoked.png"), full_page=True)
    assert not owner.problems, owner.problems
