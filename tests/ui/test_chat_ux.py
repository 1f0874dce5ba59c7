"""Issue 16 in a real browser (Debian's Chromium via Playwright, Arbor under uvicorn, a real Celery
worker and the scripted model server): comparisons never move the chat, long chats keep the reader's
place, no sideways scrolling at 360 px, dark mode, Send/Stop and the streaming state, focus after
every action, the sessions sidebar and drawer, and axe-core on every main page in both themes at
both widths (0 serious or critical violations), with screenshots in tests/artifacts/.

axe-core is vendored from npm (tests/vendor/axe-core/, ``npm pack axe-core``, MPL-2.0) and injected
with ``page.add_script_tag``: an inline script the site's CSP refuses, so only the axe contexts are
opened with ``bypass_csp=True``; every other page here runs under the real CSP.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Profile
from branches import selectors as branch_reads
from branches import services as branch_tools
from comparisons import services as compare
from comparisons.services import VariantSpec
from connections import services as connections
from conversations import services as conv
from conversations.models import Run, RunStatus, Session
from tests.comparisons.conftest import finish_run
from tests.support.factories import AgentFactory, RunFactory, SessionFactory, UserFactory, build_chain
from tests.support.processes import wait_for
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe-core" / "axe.min.js"
DESKTOP, PHONE = (1280, 800), (390, 844)
LONG = 20_000  # ms

ANSWER_WITH_CODE = (
    "Here is a plan, with **code** and a table:\n\n```python\ndef itinerary(days):\n"
    "    return [f\"day {d}: walk along the Douro and eat a francesinha at the place by the river\""
    " for d in range(days)]\n"
    "```\n\n| day | where | what |\n|---|---|---|\n| 1 | Ribeira | the old town, the bridge, the cellars |\n"
    "| 2 | Foz | the beach and the lighthouse |\n\nSee https://example.org/a/very/long/path/that/does/not/break/easily/at/all"
)


def _staff_user():
    return get_user_model().objects.create_superuser(f"staff{timezone.now().timestamp():.0f}", password="pw-123456")


def build_site(user, llm_server) -> dict:
    """Sessions, branches, a fork, a finished and voted comparison: every main page has content.
    Returns the paths of the main pages (and a few objects)."""
    now = timezone.now()
    for i, title in enumerate(["Garden ideas", "Bread baking", "Learning Portuguese", "Tax questions"]):
        s = SessionFactory(owner=user, title=title)
        build_chain(s, 2)
        Session.objects.filter(pk=s.pk).update(updated_at=now - timedelta(hours=5 - i))
    trip = SessionFactory(owner=user, title="Planning a trip to Porto")
    runs = build_chain(trip, 5)
    RunFactory(session=trip, parent_run=runs[1], turn=("What about going by train instead?", "Trains are nice."))
    last = RunFactory(session=trip, parent_run=runs[4], turn=("Make me a plan with code", ANSWER_WITH_CODE),
                      prompt_tokens=120, completion_tokens=80)
    sibling = RunFactory(session=trip, parent_run=runs[4], turn=("Make me a shorter plan", "Day 1: Ribeira."))
    RunFactory(session=trip, parent_run=runs[2], status=RunStatus.FAILED, turn=("And by bike?", None))
    Session.objects.filter(pk=trip.pk).update(active_run=last, updated_at=now)
    fork = conv.session_fork(run=runs[3], owner=user)
    RunFactory(session=fork, parent_run=runs[3], turn=("Only the museums, please", "Serralves and Soares dos Reis."))
    Session.objects.filter(pk=fork.pk).update(active_run=fork.runs.get(), updated_at=now - timedelta(minutes=1))
    comparison = compare.comparison_start(
        owner=user, session=trip, branch_point=runs[3], blind=False, prompt="Which museum first?",
        variants=[VariantSpec(label="Terse", model="model-terse"), VariantSpec(label="Chatty", model="model-chatty")],
    )
    for vr in comparison.variants.all():
        finish_run(vr.variant_runs.get().run, text=f"{vr.label}: Serralves, then the Soares dos Reis museum.")
    compare.vote_cast(comparison=comparison, turn=0, choice="a_better", note="shorter")
    branch_tools.label_create(session=trip, run=last, name="with code")
    branch_tools.label_create(session=trip, run=sibling, name="short")
    share = branch_tools.share_create(session=trip, run=last)
    server = connections.connection_create(user=user, name="Server B", base_url=llm_server.base_url).connection
    waiting = SessionFactory(owner=user, title="Waiting for a worker")
    queued = RunFactory(session=waiting, status=RunStatus.QUEUED, finished_at=None, turn=("Still there?", None))
    Session.objects.filter(pk=waiting.pk).update(active_run=queued, updated_at=now - timedelta(hours=6))
    return {
        "sessions": "/", "chat": f"/s/{trip.pk}/", "tree": f"/s/{trip.pk}/tree/", "fork": f"/s/{fork.pk}/",
        "search": "/memory/search/?q=Porto", "comparisons": "/compare/", "comparison": f"/compare/{comparison.pk}/",
        "new-comparison": f"/compare/new/{trip.pk}/{runs[3].pk}/", "results": "/compare/results/",
        "import": "/archive/", "queued": f"/s/{waiting.pk}/",
        "branches": f"/s/{trip.pk}/branches/", "diff": f"/s/{trip.pk}/diff/?a={last.pk}&b={sibling.pk}",
        "shared": f"/shared/{branch_reads.share_token(share)}/",
        "connections": "/connections/", "connection": f"/connections/{server.pk}/",
        "trip": trip, "runs": runs, "last": last, "sibling": sibling,
    }


def audited_run(user) -> str:
    """A run answered by the worker (so its audit page has the exact request): its audit path."""
    session = SessionFactory(owner=user, title="Audited")
    run = conv.run_start(session=session, input="Tell me about the Douro in one line")
    wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED, timeout=30, message="the audited run")
    return f"/audit/runs/{run.pk}/"


def serious(violations: list[dict]) -> list[dict]:
    """The axe violations whose impact is serious or critical (what the browser tests allow none of)."""
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def axe(page) -> list[dict]:
    """axe-core's WCAG 2.x A/AA and best-practice violations on the page (needs a bypass_csp context)."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
          const result = await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']},
            resultTypes: ['violations'],
          });
          return result.violations.map(v => ({id: v.id, impact: v.impact, count: v.nodes.length,
            nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' :: '
              + (n.failureSummary || '').split('\\n').slice(1, 2).join(''))}));
        }"""
    )


def settle(page) -> None:
    page.wait_for_load_state("load")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def open_drawer_or_sidebar(page, viewport) -> None:
    if viewport == PHONE:
        page.locator(".drawer-toggle").click()
        expect(page.locator("#sessions")).to_be_visible()
        page.wait_for_timeout(250)  # the slide-in transition


def test_every_main_page_passes_axe_in_both_themes_at_both_widths(new_page, asgi_server, celery_worker, llm_server,
                                                                  artifacts):
    """axe-core on every main page (and the run audit page), light and dark, 1280×800 and 390×844:
    no serious or critical violation. Screenshots of the sidebar, chat, tree and comparison pages."""
    user = _staff_user()
    paths = build_site(user, llm_server)
    audit = audited_run(user)
    pages = {k: v for k, v in paths.items() if isinstance(v, str)} | {"audit": audit}
    shots = {"chat", "tree", "comparison"}
    found: dict = {}
    for theme in ("light", "dark"):
        for viewport in (DESKTOP, PHONE):
            page = new_page(viewport, color_scheme=theme, bypass_csp=True)
            if viewport == DESKTOP and theme == "light":  # the login page, as a visitor sees it
                page.goto(asgi_server + "/accounts/login/")
                found[("login", theme, viewport)] = axe(page)
            login(page, asgi_server, user)
            for name, path in pages.items():
                response = page.goto(asgi_server + path)
                assert response.status == 200, (name, response.status)
                settle(page)
                found[(name, theme, viewport)] = axe(page)
                if name in shots:
                    page.screenshot(path=str(artifacts / f"ux-{name}-{viewport[0]}x{viewport[1]}-{theme}.png"))
                if name == "chat":
                    open_drawer_or_sidebar(page, viewport)
                    page.fill("#side-q", "Porto")
                    expect(page.locator("#side-results .side-count")).to_contain_text("2 matches")
                    found[("sidebar", theme, viewport)] = axe(page)
                    page.screenshot(path=str(artifacts / f"ux-sidebar-{viewport[0]}x{viewport[1]}-{theme}.png"))
            page.context.close()
    report = []
    for (name, theme, viewport), violations in sorted(found.items(), key=lambda kv: str(kv[0])):
        for v in violations:
            report.append(f"{name} {theme} {viewport[0]}: {v['impact']} {v['id']} ×{v['count']} {v['nodes']}")
    print("\n".join(report) or "axe: no violations at all")
    serious = [line for line in report if " serious " in line or " critical " in line]
    assert not serious, "\n".join(serious)
    assert len(found) == 1 + 4 * (len(pages) + 1)


def test_no_horizontal_scroll_at_360_px_on_every_main_page(new_page, asgi_server, celery_worker, llm_server):
    """At 360 px wide nothing is wider than the viewport: top bar, chat (code, tables, long links),
    tree, search, comparisons, results, import, login."""
    user = _staff_user()
    paths = build_site(user, llm_server)
    pages = [v for v in paths.values() if isinstance(v, str)] + [audited_run(user)]
    page = new_page((360, 740))
    page.goto(asgi_server + "/accounts/login/")
    widths = {"/accounts/login/": page.evaluate("document.documentElement.scrollWidth")}
    login(page, asgi_server, user)
    for path in pages:
        page.goto(asgi_server + path)
        settle(page)
        widths[path] = page.evaluate("document.documentElement.scrollWidth")
    page.goto(asgi_server + paths["chat"])
    page.locator(".menu-toggle").click()  # the site menu opens inside the viewport too
    expect(page.locator("#site-nav")).to_be_visible()
    widths["menu open"] = page.evaluate("document.documentElement.scrollWidth")
    print(widths)
    assert {path: w for path, w in widths.items() if w > 360} == {}
    assert not [p for p in page.problems if "Content Security Policy" in p or "Refused" in p], page.problems


def test_comparisons_never_change_the_sessions_shown_branch(page, asgi_server, celery_worker):
    """Two "Compare from here" on a 12-turn thread (variants answered by the worker): the chat
    still shows the user's 12 turns, answered by the session's model; the variants are versions
    of the turns they branch from (1/3), nothing more."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Twelve turns")
    runs = build_chain(session, 12)
    login(page, asgi_server, user)
    for branch_point, prompt in ((runs[9], "Say it differently"), (runs[6], "Another angle")):
        page.goto(f"{asgi_server}/s/{session.pk}/")
        page.locator(f"#turn-{branch_point.pk}").get_by_role("link", name="Compare from here").click()
        page.wait_for_url(re.compile(r"/compare/new/"))
        page.fill("#id_prompt", prompt)
        page.fill("#id_v0-label", "Echo")
        page.fill("#id_v1-label", "Echo again")
        page.click("button.start")
        page.wait_for_url(re.compile(r"/compare/[0-9a-f-]+/$"))
        expect(page.locator(".cell.done")).to_have_count(2, timeout=LONG)
    session.refresh_from_db()
    assert session.active_run_id == runs[11].pk
    assert Run.objects.filter(session=session).count() == 12 + 4
    page.goto(f"{asgi_server}/s/{session.pk}/")
    expect(page.locator("article.turn")).to_have_count(12)
    expect(page.locator("article.turn").last).to_contain_text("answer 11")
    expect(page.locator(f"#turn-{runs[10].pk} .sib-pos")).to_have_text("1/3")
    expect(page.locator(f"#turn-{runs[7].pk} .sib-pos")).to_have_text("1/3")
    expect(page.locator("#composer-model")).to_have_text("Answered by Default · fake-model")
    expect(page.locator("article.turn .msg.assistant .role").last).not_to_contain_text("compare")


def test_loading_older_turns_keeps_the_turn_being_read_in_place(page, asgi_server):
    """A 120-turn chat opens on its newest 30; scrolled to the top it loads 30 more (not all 90) and
    the turn that was at the top stays where it was on screen."""
    user = UserFactory()
    session = SessionFactory(owner=user)
    build_chain(session, 120)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    turns = page.locator("article.turn")
    expect(turns).to_have_count(30)
    expect(turns.first).to_contain_text("question 90")
    # Scroll to the very top and note where the first turn is, in the same task (before the
    # observer fires).
    anchor_id, before = page.evaluate(
        "() => { window.scrollTo(0, 0); const t = document.querySelector('article.turn');"
        " return [t.id, t.getBoundingClientRect().top]; }")
    expect(turns).to_have_count(60, timeout=LONG)
    page.wait_for_timeout(1500)  # nothing more loads by itself: the new loader is far above
    expect(turns).to_have_count(60)
    after = page.evaluate(f"document.getElementById('{anchor_id}').getBoundingClientRect().top")
    assert abs(after - before) <= 2, (before, after)
    assert page.evaluate("window.scrollY") > 1000
    expect(page.locator("#announcer")).to_contain_text("Loaded 30 older turns")
    page.evaluate("window.scrollTo(0, 0)")
    expect(turns).to_have_count(90, timeout=LONG)
    expect(turns.first).to_contain_text("question 30")


def _background(page) -> tuple[int, int, int]:
    rgb = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return tuple(int(x) for x in re.findall(r"\d+", rgb)[:3])


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered_per_user(new_page, asgi_server):
    user = UserFactory()
    session = SessionFactory(owner=user)
    build_chain(session, 2)
    dark_system = new_page(DESKTOP, color_scheme="dark")
    login(dark_system, asgi_server, user)
    dark_system.goto(f"{asgi_server}/s/{session.pk}/")
    assert max(_background(dark_system)) < 40  # the system's dark setting applies
    light_system = new_page(DESKTOP, color_scheme="light")
    login(light_system, asgi_server, user)
    light_system.goto(f"{asgi_server}/s/{session.pk}/")
    assert min(_background(light_system)) > 240
    light_system.get_by_role("button", name="Dark theme").click()
    expect(light_system.locator("html")).to_have_attribute("data-theme", "dark")
    assert max(_background(light_system)) < 40  # applied at once
    expect(light_system.get_by_role("button", name="Dark theme")).to_have_attribute("aria-pressed", "true")
    wait_for(lambda: Profile.objects.filter(user=user, theme="dark").exists(), timeout=5, message="the theme saved")
    other_device = new_page(PHONE, color_scheme="light")  # another browser: the choice follows the user
    login(other_device, asgi_server, user)
    other_device.goto(f"{asgi_server}/s/{session.pk}/tree/")
    expect(other_device.locator("html")).to_have_attribute("data-theme", "dark")
    assert max(_background(other_device)) < 40
    other_device.get_by_role("button", name="System theme").click()
    expect(other_device.locator("html")).not_to_have_attribute("data-theme", re.compile("."))
    assert min(_background(other_device)) > 240
    wait_for(lambda: Profile.objects.filter(user=user, theme="system").exists(), timeout=5, message="system saved")
    for p in (dark_system, light_system, other_device):
        assert not [x for x in p.problems if "Content Security Policy" in x or "Refused" in x], p.problems


def _send(page, text: str) -> None:
    page.fill("#id_input", text)
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.click(".composer button.send")


def _wait_idle(page, session) -> None:
    wait_for(lambda: not Run.objects.filter(session=session, status__in=["queued", "running"]).exists(),
             timeout=LONG / 1000, message="the runs to finish")
    expect(page.locator(".streaming")).to_have_count(0, timeout=LONG)


def test_send_turns_into_stop_with_a_typing_indicator_and_an_honest_badge(page, asgi_server, celery_worker, artifacts):
    user = UserFactory()
    session = SessionFactory(owner=user, title="Streaming")
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    expect(page.locator("#id_input")).not_to_be_focused()  # not on load: the turn keys work at once
    send, stop = page.locator(".composer button.send"), page.locator(".composer button.stop")
    expect(send).to_be_visible()
    expect(stop).to_have_count(0)
    _send(page, "[[first_delay:2]] [[tokens:400]] [[delay:0.05]]")
    expect(stop).to_be_visible()
    expect(send).to_be_hidden()
    expect(page.locator("#id_input")).to_be_focused()
    expect(page.locator("#announcer")).to_contain_text("Sent")
    badge, typing = page.locator(".streaming .status-badge"), page.locator(".streaming .typing")
    expect(typing).to_be_visible()  # before the first token
    expect(badge).to_have_text("thinking…", timeout=LONG)  # the worker's "running" status event
    page.screenshot(path=str(artifacts / "ux-streaming-thinking.png"))
    expect(page.locator(".streaming .stream-text")).to_contain_text("w3", timeout=LONG)
    expect(badge).to_have_text("writing…")
    expect(badge).to_have_attribute("data-status", "writing")
    expect(typing).to_be_hidden()
    page.screenshot(path=str(artifacts / "ux-streaming-writing.png"))
    page.keyboard.type("next question")
    page.keyboard.press("Enter")  # nothing is sent while the reply streams
    expect(page.locator("#announcer")).to_contain_text("still being written")
    stop.click()
    expect(page.locator("#id_input")).to_be_focused()
    _wait_idle(page, session)
    expect(send).to_be_visible()
    expect(stop).to_have_count(0)
    expect(page.locator("#announcer")).to_contain_text("Stopped")
    expect(page.locator("#id_input")).to_be_focused()
    expect(page.locator("#id_input")).to_have_value("next question")  # the typed text is kept
    assert Run.objects.get(session=session).status == RunStatus.CANCELLED
    page.keyboard.press("Enter")
    expect(page.locator("article.turn")).to_have_count(2, timeout=LONG)
    _wait_idle(page, session)
    expect(page.locator("#announcer")).to_contain_text("complete")


def test_focus_follows_each_action_and_is_announced(page, asgi_server, celery_worker):
    """Load → nothing (Shift+Escape → composer); skip link → main; Edit → its box, then the new
    version; ‹ › → the arrow; Regenerate → the new version; Continue from here → composer; copy a
    user message; a tree node → its turn; a vote → the vote."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Focus")
    runs = build_chain(session, 2)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    expect(page.locator("#id_input")).not_to_be_focused()
    page.keyboard.press("Shift+Escape")
    expect(page.locator("#id_input")).to_be_focused()
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")  # a page that does not focus a box of its own
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()  # the first Tab stop
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.goto(f"{asgi_server}/s/{session.pk}/")

    last = page.locator("article.turn").last
    last.get_by_role("button", name="Edit").click()
    box = last.locator("details.edit textarea")
    expect(box).to_be_focused()
    box.fill("question 1, edited")
    box.press("Enter")
    expect(page.locator("article.turn.active")).to_be_focused(timeout=LONG)
    expect(page.locator("#announcer")).to_contain_text("Edited turn 2")
    _wait_idle(page, session)
    expect(page.locator("article.turn").last.locator(".sib-pos")).to_have_text("2/2")

    page.locator("article.turn").last.locator(".sib.prev").click()
    expect(page.locator("article.turn").last.locator(".sib-pos")).to_have_text("1/2")
    expect(page.locator("article.turn").last.locator(".sib.next")).to_be_focused()  # ‹ is disabled now
    expect(page.locator("article.turn").last.locator(".sib.prev")).to_be_disabled()
    expect(page.locator("#announcer")).to_contain_text("version 1 of 2")

    page.locator("article.turn").last.get_by_role("button", name="Regenerate").click()
    expect(page.locator("article.turn.active")).to_be_focused(timeout=LONG)
    expect(page.locator("#announcer")).to_contain_text("Regenerating turn 2")
    _wait_idle(page, session)
    new = Run.objects.filter(session=session).order_by("-created_at").first()
    assert page.evaluate("document.activeElement.id") == f"turn-{new.pk}"

    page.locator("article.turn").first.get_by_role("button", name="Continue from here").click()
    expect(page.locator("article.turn")).to_have_count(1)
    expect(page.locator("#id_input")).to_be_focused()
    expect(page.locator("#announcer")).to_contain_text("up to turn 1")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("article.turn").first.get_by_role("button", name="Copy message").click()
    expect(page.locator("#announcer")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "question 0"

    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    page.get_by_role("button", name="question 1, edited").click()
    page.wait_for_url(re.compile(r"\?at="))
    edited = Run.objects.get(session=session, messages__content="question 1, edited")
    expect(page.locator(f"#turn-{edited.pk}")).to_be_focused()

    comparison = compare.comparison_start(owner=user, session=session, branch_point=runs[0], blind=False,
                                          prompt="Which?", variants=[VariantSpec(label="A1"), VariantSpec(label="B1")])
    wait_for(lambda: not Run.objects.filter(session=session, status__in=["queued", "running"]).exists(),
             timeout=LONG / 1000, message="the variants")
    page.goto(f"{asgi_server}/compare/{comparison.pk}/")
    page.get_by_role("button", name="A is better").click()
    page.wait_for_url(re.compile(r"#turn-1$"))
    expect(page.locator("#turn-1 .voted")).to_be_focused()
    expect(page.locator("#announcer")).to_contain_text("Your vote")


def test_sessions_sidebar_switches_renames_deletes_and_is_a_drawer_on_phones(new_page, asgi_server):
    user = UserFactory()
    now = timezone.now()
    sessions = []
    for i, title in enumerate(["Oldest thread", "Middle thread", "Newest thread"]):
        s = SessionFactory(owner=user, title=title)
        build_chain(s, 1)
        Session.objects.filter(pk=s.pk).update(updated_at=now - timedelta(minutes=10 - i))
        sessions.append(s)
    oldest, middle, newest = sessions
    page = new_page(DESKTOP)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{newest.pk}/")
    rows = page.locator("#sessions .side-list .srow")
    expect(rows).to_have_count(3)
    expect(rows.locator(".stitle")).to_have_text(["Newest thread", "Middle thread", "Oldest thread"])
    expect(page.locator(f"#srow-{newest.pk} .stitle")).to_have_attribute("aria-current", "page")

    # Switching chats swaps the chat column only: the sidebar (and this mark on it) stays.
    page.evaluate("document.getElementById('sessions').dataset.mark = 'kept'")
    page.locator(f"#srow-{middle.pk} .stitle").click()
    page.wait_for_url(f"**/s/{middle.pk}/")
    expect(page.locator("h1.session-title")).to_have_text("Middle thread")
    assert page.evaluate("document.getElementById('sessions').dataset.mark") == "kept"
    expect(page.locator(f"#srow-{middle.pk} .stitle")).to_have_attribute("aria-current", "page")
    expect(page.locator(f"#srow-{middle.pk} .stitle")).to_be_focused()  # focus stays where it was
    expect(page).to_have_title(re.compile("Middle thread"))

    page.fill("#side-q", "oldest")
    expect(rows).to_have_count(1)
    page.fill("#side-q", "")
    expect(rows).to_have_count(3)

    row = page.locator(f"#srow-{middle.pk}")
    row.locator("details.rename summary").click()
    title_box = row.locator("input[name=title]")
    expect(title_box).to_be_focused()
    title_box.fill("Renamed thread")
    title_box.press("Enter")
    expect(page.locator(f"#srow-{middle.pk} .stitle")).to_have_text("Renamed thread")
    expect(page.locator("h1.session-title")).to_have_text("Renamed thread")  # the open chat's title too
    expect(page.locator(f"#srow-{middle.pk} .stitle")).to_be_focused()
    assert Session.objects.get(pk=middle.pk).title == "Renamed thread"

    page.locator(f"#srow-{oldest.pk}").hover()
    page.locator(f"#srow-{oldest.pk}").get_by_role("button", name="Delete").click()
    expect(page.locator(f"#srow-{oldest.pk}")).to_contain_text("Deleted")
    undo = page.locator(f"#srow-{oldest.pk}").get_by_role("button", name="Undo")
    expect(undo).to_be_focused()
    expect(page.locator("#announcer")).to_contain_text("Undo")
    undo.click()
    expect(page.locator(f"#srow-{oldest.pk} .stitle")).to_be_focused()
    wait_for(lambda: Session.objects.get(pk=oldest.pk).deleted_at is None, timeout=5)

    # Collapsible on a wide screen, remembered on this browser.
    toggle = page.locator(".drawer-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(page.locator("#sessions")).to_be_hidden()
    page.reload()
    expect(page.locator("#sessions")).to_be_hidden()
    page.locator(".drawer-toggle").click()
    expect(page.locator("#sessions")).to_be_visible()

    phone = new_page(PHONE)
    login(phone, asgi_server, user)
    phone.goto(f"{asgi_server}/s/{newest.pk}/")
    expect(phone.locator("#sessions")).to_be_hidden()
    phone.locator(".drawer-toggle").click()
    expect(phone.locator("#sessions")).to_be_visible()
    expect(phone.locator("#side-q")).to_be_focused()
    phone.keyboard.press("Escape")
    expect(phone.locator("#sessions")).to_be_hidden()
    expect(phone.locator(".drawer-toggle")).to_be_focused()
    phone.locator(".drawer-toggle").click()
    phone.locator(f"#srow-{oldest.pk} .stitle").click()
    phone.wait_for_url(f"**/s/{oldest.pk}/")
    expect(phone.locator("#sessions")).to_be_hidden()  # the drawer closes on the way


def test_turn_toolbar_sibling_controls_and_the_composer_model(page, asgi_server, artifacts):
    """‹ k/n › buttons are at least 24×24 px, the disabled one looks disabled; each turn's toolbar
    has named icon buttons (copy on both messages); the composer names the model that will answer."""
    user = UserFactory()
    AgentFactory(owner=user, name="Poet", model="poet-model")
    session = SessionFactory(owner=user)
    runs = build_chain(session, 2)
    RunFactory(session=session, parent_run=runs[0], turn=("another version", "another answer"))
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    turn = page.locator("article.turn").last
    expect(turn.locator(".sib-pos")).to_have_text("1/2")
    for arrow in (turn.locator(".sib.prev"), turn.locator(".sib.next")):
        box = arrow.bounding_box()
        assert box["width"] >= 24 and box["height"] >= 24, box
    prev = turn.locator(".sib.prev")
    expect(prev).to_be_disabled()
    style = prev.evaluate("e => [getComputedStyle(e).borderTopStyle, getComputedStyle(e).color]")
    enabled = turn.locator(".sib.next").evaluate("e => getComputedStyle(e).color")
    assert style[0] == "dashed" and style[1] != enabled  # visibly not an active control
    for role, name in (("button", "Copy message"), ("button", "Edit"), ("button", "Copy answer"),
                       ("button", "Regenerate"), ("button", "Fork to new session"), ("link", "Compare from here")):
        expect(turn.get_by_role(role, name=name, exact=True)).to_have_count(1)
    first = page.locator("article.turn").first
    expect(first.get_by_role("button", name="Continue from here")).to_have_count(1)
    tools = first.locator(".turn-foot .toolbar")
    assert tools.evaluate("e => getComputedStyle(e.querySelector('.icon-btn')).opacity") == "0"  # until hover/focus
    first.hover()
    page.wait_for_timeout(200)
    assert tools.evaluate("e => getComputedStyle(e.querySelector('.icon-btn')).opacity") == "1"
    more = turn.locator("details.more-tools")
    more.locator("> summary").click()  # the branch tools live in the turn's "more" menu
    for tool in ("Label", "Share branch", "Prune…"):
        expect(more.locator("details.branch-tool > summary", has_text=tool)).to_be_visible()
    page.screenshot(path=str(artifacts / "ux-turn-more-menu.png"))
    page.keyboard.press("Escape")
    expect(more.locator(".more-body")).to_be_hidden()
    expect(page.locator("#composer-model")).to_have_text("Answered by Default · fake-model")
    page.select_option("#id_agent", label="Poet (Default · poet-model)")
    expect(page.locator("#composer-model")).to_have_text("Answered by Default · poet-model")


def test_drawer_and_menu_open_without_javascript_on_a_phone(chromium, asgi_server):
    """Without JavaScript the top bar's Sessions and Menu links open the drawer and the menu
    (CSS :target), and the drawer's close link closes it."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="No script")
    build_chain(session, 1)
    context = chromium.new_context(java_script_enabled=False, viewport={"width": PHONE[0], "height": PHONE[1]})
    try:
        page = context.new_page()
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        expect(page.locator("#sessions")).to_be_hidden()
        page.get_by_role("link", name="Sessions", exact=True).click()
        expect(page.locator("#sessions")).to_be_visible()
        expect(page.locator("#sessions")).to_contain_text("No script")
        page.get_by_role("link", name="Close the sessions list").click()
        expect(page.locator("#sessions")).to_be_hidden()
        expect(page.locator("#site-nav")).to_be_hidden()
        page.get_by_role("link", name="Menu").click()
        expect(page.locator("#site-nav")).to_be_visible()
        expect(page.locator("#site-nav").get_by_role("link", name="Comparisons")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    finally:
        context.close()
