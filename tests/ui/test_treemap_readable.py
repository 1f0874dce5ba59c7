"""The tree map is readable (real Chromium, 1280×800 and 390×844, light and dark): the tree is
fitted to the box on load and on "Whole tree"; nodes carry short labels (turn number, branch
label, "shown") that overlap no node and no other label; wheel zoom keeps the point under the
pointer where it is (the root is not cropped); the legend folds away on phones so the map comes
first. Screenshots in tests/artifacts/map-*.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from branches import services as branches
from tests.support.factories import UserFactory
from tests.ui.conftest import login
from tests.ui.test_chat_ux import axe, settle
from tests.ui.test_treemap_browser import _trip, node

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOOKS = [(vp, theme) for vp in ((1280, 800), (390, 844)) for theme in ("light", "dark")]

_BOXES = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return {
    viewport: box(document.querySelector('.treemap-viewport')),
    drawing: box(document.querySelector('g.treemap-root')),
    labels: [...document.querySelectorAll('text.nl')].map(t => [t.textContent, box(t)]),
    nodes: [...document.querySelectorAll('circle.n, circle.ring')].map(box),
    stretches: [...document.querySelectorAll('text.cl')].map(box),
  };
}"""


def _overlap(a, b) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def _fitted(boxes) -> None:
    vp, d = boxes["viewport"], boxes["drawing"]
    assert vp[0] - 1 <= d[0] and d[2] <= vp[2] + 1 and vp[1] - 1 <= d[1] and d[3] <= vp[3] + 1, (vp, d)
    share = max((d[2] - d[0]) / (vp[2] - vp[0]), (d[3] - d[1]) / (vp[3] - vp[1]))
    assert share > 0.8, (vp, d)  # it fills the box along one side


def _labels_clear(boxes) -> None:
    labels = boxes["labels"]
    for i, (text, box) in enumerate(labels):
        assert box[2] - box[0] > 5 and box[3] - box[1] > 5, (text, box)  # drawn, not hidden
        for other_text, other in labels[i + 1:]:
            assert not _overlap(box, other), (text, other_text)
        for circle in boxes["nodes"]:
            assert not _overlap(box, circle), (text, box, circle)
        for stretch in boxes["stretches"]:
            assert not _overlap(box, stretch), (text, box, stretch)


def test_map_fits_labels_nodes_without_collisions_and_zooms_about_the_pointer(new_page, asgi_server, artifacts):
    user = UserFactory()
    session, runs, other = _trip(user)
    branches.label_create(session=session, run=other["alt"], name="by train")
    branches.label_create(session=session, run=runs[-1], name="main plan")
    for viewport, theme in LOOKS:
        page = new_page(viewport, color_scheme=theme, bypass_csp=True)
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/tree/")
        expect(page.locator(".treemap-tools")).to_be_visible()
        expect(page.locator("text.nl.nl-shown")).to_be_visible()
        settle(page)
        boxes = page.evaluate(_BOXES)
        _fitted(boxes)  # on load
        texts = [t for t, _ in boxes["labels"]]
        assert "#30 main plan · shown" in texts, texts
        assert "#5 by train" in texts, texts
        assert "#1" in texts, texts
        _labels_clear(boxes)
        if viewport[0] < 600:
            expect(page.locator("details.legend-box")).not_to_have_attribute("open", "")
            assert boxes["viewport"][1] < viewport[1] / 2  # the map starts in the upper half of the screen
        else:
            expect(page.locator("details.legend-box")).to_have_attribute("open", "")
        page.screenshot(path=str(artifacts / f"map-fitted-{viewport[0]}-{theme}.png"))
        violations = [v for v in axe(page) if v["impact"] in ("serious", "critical")]
        assert not violations, violations

        root = node(page, runs[0]).bounding_box()
        cx, cy = root["x"] + root["width"] / 2, root["y"] + root["height"] / 2
        page.mouse.move(cx, cy)
        for _ in range(3):
            page.mouse.wheel(0, -200)  # zoom in with the pointer on the root
            page.wait_for_timeout(60)
        page.wait_for_timeout(200)
        after = node(page, runs[0]).bounding_box()
        assert after["width"] > root["width"] * 1.5
        assert abs(after["x"] + after["width"] / 2 - cx) <= 1.5 and abs(after["y"] + after["height"] / 2 - cy) <= 1.5
        page.mouse.wheel(0, 600)  # and out again
        page.wait_for_timeout(200)
        expect(page.locator("text.nl").first).to_be_attached()
        _labels_clear(page.evaluate(_BOXES))
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Whole tree").click()
        page.wait_for_timeout(200)
        _fitted(page.evaluate(_BOXES))
        assert not page.problems, page.problems
        page.context.close()
