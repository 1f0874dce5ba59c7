"""The tree map in real Chromium: a click opens a branch and the active path stays highlighted,
pan and zoom by keyboard (and wheel), node-to-node keys, the hover preview, expanding a collapsed
stretch. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
import uuid

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Message, Role, Run, RunStatus, Session
from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _trip(user) -> tuple[Session, list[Run], dict]:
    session = SessionFactory(owner=user, title="Planning a trip")
    runs = build_chain(session, 30)
    alt = RunFactory(session=session, parent_run=runs[3], turn=("What about going by train instead?", "Trains."))
    alt_child = RunFactory(session=session, parent_run=alt, turn=("Which line?", "The coastal one."))
    failed = RunFactory(session=session, parent_run=runs[3], status=RunStatus.FAILED, turn=("And by bike?", None))
    short = RunFactory(session=session, parent_run=runs[7], turn=("Shorter version please", "OK."))
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    session.refresh_from_db()
    return session, runs, {"alt": alt, "alt_child": alt_child, "failed": failed, "short": short}


def node(page, run):
    return page.locator(f'svg.treemap-svg circle.n[data-run-id="{run.pk}"]')


def transform(page) -> dict:
    """Panzoom's scale and pan of the drawing, read back from the page."""
    return page.evaluate("() => { const m = document.querySelector('section.treemap').treemap; "
                         "const v = m.view(); return {s: v.s, x: v.x, y: v.y}; }")


def test_map_click_opens_the_branch_and_keeps_the_active_path_highlighted(page, asgi_server, artifacts):
    user = UserFactory()
    session, runs, other = _trip(user)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    expect(page.locator("svg.treemap-svg circle.n")).to_have_count(10)
    expect(page.locator("svg.treemap-svg circle.n.active")).to_have_count(1)
    expect(node(page, runs[-1])).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator(".treemap-tools")).to_be_visible()  # the script is running
    page.screenshot(path=str(artifacts / "treemap.png"), full_page=True)
    # hover: the preview of the turn
    node(page, other["alt"]).hover()
    tip = page.locator(".treemap-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("What about going by train instead?")
    expect(tip).to_contain_text("version 2 of 3")
    page.screenshot(path=str(artifacts / "treemap-hover.png"))
    # click: the same POST as the list, then the chat shows that branch
    node(page, other["alt"]).click()
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]+/\?at="))
    expect(page.locator("article.turn").last).to_contain_text("The coastal one.")
    session.refresh_from_db()
    assert session.active_run_id == other["alt_child"].pk
    # back on the map: the new active path is the highlighted one
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    for run in (runs[0], runs[3], other["alt"], other["alt_child"]):
        expect(node(page, run)).to_have_class(re.compile(r"\bon-path\b"))
    for run in (runs[4], runs[-1], other["failed"]):
        expect(node(page, run)).not_to_have_class(re.compile(r"\bon-path\b"))
    expect(node(page, other["alt_child"])).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator("svg.treemap-svg path.e.on-path:not(.collapsed)")).to_have_count(1)
    page.screenshot(path=str(artifacts / "treemap-after-open.png"), full_page=True)
    assert not page.problems, page.problems


def focused_run(page) -> str | None:
    return page.evaluate("() => document.activeElement && document.activeElement.getAttribute('data-run-id')")


def test_map_pan_zoom_and_move_between_nodes_by_keyboard(page, asgi_server, artifacts):
    user = UserFactory()
    session, runs, other = _trip(user)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    viewport = page.locator(".treemap-viewport")
    viewport.focus()
    start = transform(page)
    page.keyboard.press("ArrowRight")  # pans the drawing left by 80 px on the screen
    moved = transform(page)
    assert moved["x"] == pytest.approx(start["x"] - 80 / start["s"]) and moved["y"] == start["y"]
    page.keyboard.press("ArrowDown")
    assert transform(page)["y"] == pytest.approx(moved["y"] - 80 / moved["s"])
    box = node(page, runs[0]).bounding_box()
    page.keyboard.press("+")
    zoomed = transform(page)
    assert zoomed["s"] == pytest.approx(start["s"] * 1.35)
    page.wait_for_timeout(100)  # Panzoom applies the transform in the next frame
    bigger = node(page, runs[0]).bounding_box()
    assert bigger["width"] == pytest.approx(box["width"] * 1.35, rel=0.05)
    page.keyboard.press("-")
    page.keyboard.press("-")
    assert transform(page)["s"] == pytest.approx(start["s"] / 1.35)
    page.keyboard.press("0")  # the whole tree
    page.wait_for_timeout(100)
    vp = viewport.bounding_box()
    for run in (runs[0], runs[-1], other["failed"]):
        b = node(page, run).bounding_box()
        assert vp["x"] <= b["x"] and b["x"] + b["width"] <= vp["x"] + vp["width"]
        assert vp["y"] <= b["y"] and b["y"] + b["height"] <= vp["y"] + vp["height"]
    # into the nodes: the shown run first, then parent / neighbour / child
    page.keyboard.press("Enter")
    assert focused_run(page) == str(runs[-1].pk)
    expect(page.locator(".treemap-tip")).to_contain_text("shown in the chat")
    page.keyboard.press("ArrowUp")  # above the straight stretch of 20 runs: runs[8]
    assert focused_run(page) == str(runs[8].pk)
    page.keyboard.press("ArrowRight")  # its neighbour on the same level: the other version of turn 9
    assert focused_run(page) == str(other["short"].pk)
    expect(page.locator(".treemap-tip")).to_contain_text("Shorter version please")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowDown")  # the child on the active path
    assert focused_run(page) == str(runs[-1].pk)
    page.screenshot(path=str(artifacts / "treemap-keyboard.png"))
    # "e" draws the straight stretch above the focused node in full; the node keeps its focus
    with page.expect_response(lambda r: "/tree/map?expand=" in r.url):
        page.keyboard.press("e")
    expect(page.locator("svg.treemap-svg circle.n")).to_have_count(30)
    assert focused_run(page) == str(runs[-1].pk)
    assert f"expand={runs[-1].pk}" in page.url  # a reload keeps it
    page.keyboard.press("Escape")
    assert page.evaluate("() => document.activeElement.classList.contains('treemap-viewport')")
    page.keyboard.press("Home")  # nothing on the map itself: the page's own key
    # Enter on a node opens its branch in the chat
    page.keyboard.press("Enter")
    page.keyboard.press("ArrowUp")
    assert focused_run(page) == str(runs[28].pk)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("article.turn").last).to_contain_text("answer 29")  # the newest run below runs[28]
    assert not page.problems, page.problems


def test_map_wheel_zoom_drag_pan_and_clicking_a_stretch_label(page, asgi_server, artifacts):
    user = UserFactory()
    session = SessionFactory(owner=user, title="A long talk")
    runs = build_chain(session, 1000)
    for run in runs[100:1000:100]:
        RunFactory(session=session, parent_run=run, turn=("a side question", "a side answer"))
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    shown = node(page, runs[-1])
    expect(shown).to_be_visible()
    b = shown.bounding_box()
    vp = page.locator(".treemap-viewport").bounding_box()
    # the map opens with the whole tree fitted to the box (it is readable at that scale)
    assert vp["x"] <= b["x"] and b["x"] + b["width"] <= vp["x"] + vp["width"]
    assert vp["y"] <= b["y"] and b["y"] + b["height"] <= vp["y"] + vp["height"]
    start = transform(page)
    page.mouse.move(vp["x"] + 100, vp["y"] + 100)
    page.mouse.wheel(0, -300)  # zoom in around the pointer
    page.wait_for_timeout(100)
    assert transform(page)["s"] > start["s"]
    page.mouse.wheel(0, 300)  # about the pointer (treemap.js), by the wheel's distance
    page.wait_for_timeout(50)
    page.mouse.wheel(0, 300)
    page.wait_for_timeout(100)
    assert transform(page)["s"] < start["s"]
    before = transform(page)
    page.mouse.move(vp["x"] + 300, vp["y"] + 300)
    page.mouse.down()
    page.mouse.move(vp["x"] + 360, vp["y"] + 250, steps=5)
    page.mouse.up()
    after = transform(page)
    assert after["x"] > before["x"] and after["y"] < before["y"]
    assert "/tree/" in page.url  # a drag is not a click
    page.keyboard.press("Escape")
    page.locator(".treemap-tools [data-act=fit]").click()
    page.screenshot(path=str(artifacts / "treemap-1000-deep.png"))
    page.locator(".treemap-tools [data-act=shown]").click()
    label = page.locator(f'svg.treemap-svg text.cl[data-run-id="{runs[-1].pk}"]')
    expect(label).to_have_text("+97")  # runs[902] … runs[998]
    drawn = page.locator("svg.treemap-svg circle.n").count()
    with page.expect_response(lambda r: "/tree/map?expand=" in r.url):
        label.click()
    expect(page.locator("svg.treemap-svg circle.n")).to_have_count(drawn + 97)
    assert not page.problems, page.problems


def test_map_pinch_zoom_and_drag_by_touch(chromium, asgi_server):
    """Touch input as a phone sends it (Chromium's own touch events, through the DevTools protocol):
    two fingers spreading zoom in, one finger dragging pans, a tap opens the branch."""
    user = UserFactory()
    session, runs, other = _trip(user)
    context = chromium.new_context(viewport={"width": 420, "height": 800}, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/tree/")
        expect(page.locator(".treemap-tools")).to_be_visible()
        cdp = context.new_cdp_session(page)
        vp = page.locator(".treemap-viewport").bounding_box()
        cx, cy = vp["x"] + vp["width"] / 2, vp["y"] + vp["height"] / 2

        def touch(kind, points):
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
                {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]})

        start = transform(page)
        touch("touchStart", [(cx - 30, cy), (cx + 30, cy)])
        for step in range(1, 6):
            touch("touchMove", [(cx - 30 - 20 * step, cy), (cx + 30 + 20 * step, cy)])
        touch("touchEnd", [])
        page.wait_for_timeout(100)
        pinched = transform(page)
        assert pinched["s"] > start["s"] * 1.3  # the tree opens fitted (scale 1.7 here): Panzoom stops sooner
        touch("touchStart", [(cx, cy)])
        for step in range(1, 6):
            touch("touchMove", [(cx + 10 * step, cy + 8 * step)])
        touch("touchEnd", [])
        page.wait_for_timeout(100)
        dragged = transform(page)
        assert dragged["x"] > pinched["x"] and dragged["y"] > pinched["y"] and dragged["s"] == pinched["s"]
        assert "/tree/" in page.url  # a drag is not a tap
        page.locator(".treemap-tools [data-act=shown]").tap()
        node(page, other["failed"]).tap()
        page.wait_for_url(re.compile(rf"\?at={other['failed'].pk}"))
        session.refresh_from_db()
        assert session.active_run_id == other["failed"].pk
    finally:
        context.close()


def _fan(session, parents, k: int) -> None:
    """``k`` finished leaf runs (with their input and answer) under each of ``parents``, in bulk."""
    now = timezone.now()
    runs, messages = [], []
    for parent in parents:
        for j in range(k):
            run = Run(id=uuid.uuid4(), session=session, parent_run=parent, depth=parent.depth + 1,
                      status=RunStatus.SUCCEEDED, model="fake-model", created_at=now, finished_at=now)
            runs.append(run)
            text = f"version {j + 2} of turn {run.depth + 1}"
            messages.append(Message(run=run, position=0, role=Role.USER, content=text))
            messages.append(Message(run=run, position=1, role=Role.ASSISTANT, content="ok"))
    Run.objects.bulk_create(runs, batch_size=500)
    Message.objects.bulk_create(messages, batch_size=1000)


def test_a_bushy_tree_folds_past_the_budget_and_unfolds_on_click(page, asgi_server, artifacts, chromium):
    """300 turns with 6 other versions each (2,100 nodes): the map draws 1,500 and folds the rest
    into one node per parent; a click on a folded node draws what it stands for."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Many versions")
    runs = build_chain(session, 300)
    _fan(session, runs[:-1], 6)
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    folded = page.locator("svg.treemap-svg circle.n.folded")
    expect(folded.first).to_be_attached()
    drawn = page.locator("svg.treemap-svg circle.n:not(.folded)").count()
    assert drawn == 1500
    page.locator(".treemap-tools [data-act=fit]").click()
    page.screenshot(path=str(artifacts / "treemap-folded.png"))
    # the path is drawn first, then the other versions from the root down: those of turn 300 are
    # folded into one node, the shown run's neighbour on its level
    page.locator(".treemap-viewport").focus()
    page.keyboard.press("Enter")  # from the whole tree into the nodes: the shown run, at a readable scale
    assert transform(page)["s"] == 1
    page.keyboard.press("ArrowRight")
    stub = page.locator("svg.treemap-svg circle.n.folded:focus")
    expect(stub).to_have_attribute("data-u", str(runs[-2].pk))
    expect(page.locator(".treemap-tip")).to_contain_text("6 runs in 6 branches folded here")
    parent, first = stub.get_attribute("data-u"), stub.get_attribute("data-run-id")
    with page.expect_response(lambda r: "/tree/map?" in r.url and "unfold=" in r.url):
        stub.click()
    expect(page.locator(f'svg.treemap-svg circle.n:not(.folded)[data-run-id="{first}"]')).to_have_count(1)
    assert f"unfold={parent}" in page.url
    assert page.evaluate("() => document.activeElement.getAttribute('data-run-id')") == first
    assert not page.problems, page.problems
    # without JavaScript the map is a picture in a scroll box, and the list does the rest
    context = chromium.new_context(java_script_enabled=False)
    try:
        still = context.new_page()
        login(still, asgi_server, user)
        still.goto(f"{asgi_server}/s/{session.pk}/tree/")
        expect(still.locator("svg.treemap-svg")).to_be_visible()
        expect(still.locator(".treemap-tools")).to_be_hidden()
        still.screenshot(path=str(artifacts / "treemap-nojs.png"))
    finally:
        context.close()
