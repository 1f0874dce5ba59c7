"""The chat in daily use, in a real browser (Debian's Chromium via Playwright, Arbor under uvicorn,
a real Celery worker and the scripted model server), each at 1280×800 and 390×844 in the light and
dark themes: nothing ends under the sticky composer (after Stop, while streaming when the reader
scrolled away: "Jump to latest"), the phone layout (a one-row composer, a one-line header with a
details toggle, one row of turn controls), menus that open upwards near the bottom with their forms
in view, and the keyboard (the composer is not focused on load, Escape leaves it, Shift+Escape comes
back, new session and copy the last answer). Screenshots in tests/artifacts/daily-*.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Run, RunStatus, Session
from tests.support.factories import ImportJobFactory, RunFactory, SessionFactory, UserFactory, build_chain
from tests.support.processes import wait_for
from tests.ui.conftest import login
from tests.ui.test_chat_ux import DESKTOP, LONG, PHONE, axe, serious, settle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOOKS = [(vp, theme) for vp in (DESKTOP, PHONE) for theme in ("light", "dark")]
LONG_ANSWER = "\n\n".join(f"Paragraph {i}: " + "the river and the bridges and the old town " * 6 for i in range(8))


def _name(viewport, theme) -> str:
    return f"{viewport[0]}x{viewport[1]}-{theme}"


def _gap_to_composer(page) -> float:
    """How far the newest turn's bottom edge is below the composer's top edge (px; > 0: hidden)."""
    return page.evaluate(
        "() => { const t = [...document.querySelectorAll('#thread article.turn')].pop();"
        " const c = document.querySelector('form.composer');"
        " return t.getBoundingClientRect().bottom - c.getBoundingClientRect().top; }")



def test_nothing_ends_under_the_composer_after_stop_or_while_streaming(new_page, asgi_server, celery_worker,
                                                                      artifacts):
    """A long answer streams and is stopped: "Stopped." and the turn's actions end above the
    composer. A reader who scrolls up while an answer streams gets "Jump to latest", which brings the
    newest turn's end into sight above the composer."""
    user = UserFactory()
    for viewport, theme in LOOKS:
        session = SessionFactory(owner=user, title="Stop here")
        build_chain(session, 3)
        page = new_page(viewport, color_scheme=theme)
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        page.fill("#id_input", "[[tokens:2000]] [[delay:0.02]]")
        page.click(".composer button.send")
        expect(page.locator(".streaming .stream-text")).to_contain_text("w150", timeout=LONG)
        page.locator(".composer button.stop").click()
        wait_for(lambda s=session: not Run.objects.filter(session=s, status__in=["queued", "running"]).exists(),
                 timeout=LONG / 1000, message="the run to stop")
        expect(page.locator(".streaming")).to_have_count(0, timeout=LONG)
        expect(page.locator("article.turn").last.locator(".stopped-note")).to_be_visible()
        settle(page)
        page.wait_for_timeout(150)
        gap = _gap_to_composer(page)
        page.screenshot(path=str(artifacts / f"daily-stopped-{_name(viewport, theme)}.png"))
        assert gap <= 1, (viewport, theme, gap)
        expect(page.locator(".jump-latest")).to_be_hidden()

        page.fill("#id_input", "[[tokens:3000]] [[delay:0.01]]")
        page.keyboard.press("Enter")
        expect(page.locator(".streaming .stream-text")).to_contain_text("w100", timeout=LONG)
        page.mouse.wheel(0, -1500)  # the reader scrolls up while it streams
        jump = page.locator(".jump-latest")
        expect(jump).to_be_visible()
        page.screenshot(path=str(artifacts / f"daily-jump-{_name(viewport, theme)}.png"))
        jump.click()
        page.wait_for_timeout(100)
        assert _gap_to_composer(page) <= 1
        page.locator(".composer button.stop").click()
        expect(page.locator(".streaming")).to_have_count(0, timeout=LONG)
        page.wait_for_timeout(150)
        assert _gap_to_composer(page) <= 1
        assert not page.problems, page.problems
        page.context.close()


def test_phone_layout_gives_the_screen_to_the_conversation(new_page, asgi_server, artifacts):
    """At 390 px: the composer is one row (box, picker and Send side by side) that grows with the
    text; the header is one line with a details toggle (views, export, counts, meter behind it);
    a turn's controls share one row. At 1280 px the header shows everything."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="A rather long title for a session about planning a trip to Porto")
    runs = build_chain(session, 2)
    last = RunFactory(session=session, parent_run=runs[-1], turn=("question 2", "answer 2"), prompt_tokens=120,
                      completion_tokens=80)  # a turn with a facts line under its actions
    Session.objects.filter(pk=session.pk).update(active_run=last)
    for viewport, theme in LOOKS:
        page = new_page(viewport, color_scheme=theme, bypass_csp=True)
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        settle(page)
        composer = page.locator("form.composer").bounding_box()
        parts = [page.locator(sel).bounding_box() for sel in ("#id_input", "#id_agent", ".composer button.send")]
        head = page.locator("header.session-head").bounding_box()
        if viewport == PHONE:
            assert composer["height"] <= 60, composer
            tops = [p["y"] for p in parts]
            bottoms = [p["y"] + p["height"] for p in parts]
            assert max(tops) < min(bottoms), parts  # one row: the three overlap vertically
            assert parts[0]["x"] < parts[1]["x"] < parts[2]["x"]
            assert head["height"] <= 44, head
            expect(page.locator("#branch-facts")).to_be_hidden()
            expect(page.locator("nav.views")).to_be_hidden()
            toggle = page.get_by_role("button", name="Session details")
            expect(toggle).to_have_attribute("aria-expanded", "false")
            turn = page.locator("article.turn").last
            copy_message = turn.get_by_role("button", name="Copy message").bounding_box()
            regenerate = turn.get_by_role("button", name="Regenerate").bounding_box()
            assert abs(copy_message["y"] - regenerate["y"]) <= 2, (copy_message, regenerate)
            page.screenshot(path=str(artifacts / f"daily-phone-{theme}.png"))
            violations = axe(page)
            assert not serious(violations), violations
            page.fill("#id_input", "one\ntwo\nthree\nfour")
            assert page.locator("form.composer").bounding_box()["height"] > composer["height"] + 30  # it grows
            page.fill("#id_input", "")
            toggle.click()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            expect(page.locator("#branch-facts")).to_be_visible()
            expect(page.locator("nav.views")).to_be_visible()
            expect(page.locator("details.exports > summary")).to_be_visible()
            title = page.locator("#session-title").bounding_box()
            assert abs(toggle.bounding_box()["y"] - title["y"]) < title["height"]  # on the title's line
            page.screenshot(path=str(artifacts / f"daily-phone-details-{theme}.png"))
        else:
            expect(page.get_by_role("button", name="Session details")).to_be_hidden()
            expect(page.locator("nav.views")).to_be_visible()
            expect(page.locator("#branch-facts")).to_be_visible()
            violations = axe(page)
            assert not serious(violations), violations
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport[0]
        page.context.close()


def test_the_last_turns_menu_opens_upwards_and_keeps_its_forms_in_view(new_page, asgi_server, artifacts):
    """The newest turn's ⋯ menu opens above its button (not over the composer); with Label, Share and
    Prune all open each form is in view above the composer, and the page grows no blank band."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Menus")
    build_chain(session, 4)
    for viewport, theme in LOOKS:
        page = new_page(viewport, color_scheme=theme, bypass_csp=True)
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        settle(page)
        height = page.evaluate("document.documentElement.scrollHeight")
        menu = page.locator("article.turn").last.locator("details.more-tools")
        menu.locator("> summary").click()
        body = menu.locator(".more-body")
        expect(body).to_be_visible()
        composer_top = page.locator("form.composer").bounding_box()["y"]
        box = body.bounding_box()
        assert box["y"] + box["height"] <= composer_top + 1, (box, composer_top)
        assert box["y"] >= page.locator(".topbar").bounding_box()["height"] - 1, box
        for tool in ("Label", "Share branch", "Prune…"):
            menu.locator("details.branch-tool > summary", has_text=tool).click()
            form = menu.locator("details.branch-tool[open] form").last
            expect(form).to_be_in_viewport()
            button = form.locator("button[type=submit]").bounding_box()
            assert button["y"] + button["height"] <= page.locator("form.composer").bounding_box()["y"] + 1, tool
        page.screenshot(path=str(artifacts / f"daily-menu-{_name(viewport, theme)}.png"))
        if viewport == DESKTOP:  # the header's Export menu open too
            page.locator("details.exports > summary").click()
            expect(page.locator("details.exports ul")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollHeight") <= height + 1  # no blank band
        violations = axe(page)
        assert not serious(violations), violations
        page.keyboard.press("Escape")
        page.context.close()


def test_keyboard_composer_escape_and_shortcuts(new_page, asgi_server):
    """On load the composer is not focused, so j moves to a turn; Shift+Escape goes to the composer,
    Escape leaves it (and j/k work again); Ctrl+Shift+C copies the last answer, Ctrl+Shift+O opens a
    new session."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Keys")
    runs = build_chain(session, 4)
    for viewport, theme in LOOKS:
        page = new_page(viewport, color_scheme=theme)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        settle(page)
        expect(page.locator("#id_input")).not_to_be_focused()
        page.keyboard.press("j")  # the turn keys work at once
        expect(page.locator("article.turn:focus")).to_have_count(1)
        page.keyboard.press("Shift+Escape")
        expect(page.locator("#id_input")).to_be_focused()
        page.keyboard.type("kj")  # typed into the box, not used as keys
        expect(page.locator("#id_input")).to_have_value("kj")
        page.keyboard.press("Escape")
        expect(page.locator("#id_input")).not_to_be_focused()
        expect(page.locator(f"#turn-{runs[-1].pk}")).to_be_focused()
        page.keyboard.press("k")
        expect(page.locator(f"#turn-{runs[-2].pk}")).to_be_focused()
        page.keyboard.press("Control+Shift+C")
        expect(page.locator("#announcer")).to_contain_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == "answer 3"
        before = Session.objects.filter(owner=user).count()
        page.keyboard.press("Control+Shift+O")
        old = f"{asgi_server}/s/{session.pk}/"
        page.wait_for_url(lambda url, old=old: re.search(r"/s/[0-9a-f-]+/$", url) is not None and url != old)
        assert Session.objects.filter(owner=user).count() == before + 1
        assert not page.problems, page.problems
        page.context.close()


def test_failed_and_stopped_runs_show_no_token_counts(page, asgi_server):
    user = UserFactory()
    session = SessionFactory(owner=user)
    runs = build_chain(session, 1)
    failed = RunFactory(session=session, parent_run=runs[0], status=RunStatus.FAILED, prompt_tokens=71,
                        completion_tokens=0, turn=("And then?", None))
    stopped = RunFactory(session=session, parent_run=failed, status=RunStatus.CANCELLED, prompt_tokens=90,
                         completion_tokens=12, turn=("Go on", "Partial"))
    Session.objects.filter(pk=session.pk).update(active_run=stopped)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    expect(page.locator("article.turn")).to_have_count(3)
    expect(page.locator(f"#turn-{stopped.pk} .stopped-note")).to_be_visible()
    expect(page.locator(f"#turn-{failed.pk} .error")).to_be_visible()
    for run in (failed, stopped):
        expect(page.locator(f"#turn-{run.pk}")).not_to_contain_text("tokens")


def test_the_picker_agrees_with_connections_and_base_urls_do_not_wrap(new_page, asgi_server, llm_server):
    """"Check" on the Default connection ("reachable · N models listed") stores those models: the
    Models column says N and the chat's picker offers them. A base URL stays on one line."""
    from connections.selectors import default_connection

    user = UserFactory()
    default = default_connection()
    session = SessionFactory(owner=user)
    build_chain(session, 1)
    for viewport, theme in LOOKS:
        page = new_page(viewport, color_scheme=theme, bypass_csp=True)
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/connections/")
        row = page.locator(f"#connection-{default.pk}")
        row.get_by_role("button", name="Check").click()
        expect(row.locator(".health-message")).to_contain_text("listed")
        listed = int(re.search(r"(\d+) models? listed", row.locator(".health-message").inner_text()).group(1))
        page.reload()
        expect(page.locator(f"#connection-{default.pk} td.num")).to_have_text(str(listed))
        code = page.locator(f"#connection-{default.pk} td code")
        box = code.bounding_box()
        line = code.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20")
        assert box["height"] <= line * 1.5, (box, line)  # one line
        violations = [v for v in axe(page) if v["impact"] in ("serious", "critical")]
        assert not violations, violations
        page.goto(f"{asgi_server}/s/{session.pk}/")
        options = page.locator(f'#id_agent optgroup[label="{default.name}"] option')
        expect(options).to_have_count(listed)
        expect(options.first).to_contain_text("fake-model")
        page.context.close()


def test_the_small_things(new_page, asgi_server, celery_worker, artifacts):
    """Import report without a CLI flag; a comparison's streams close without console errors; a
    share link has Copy; a failed run reads as people speak ("refused the connection"), with no
    token counts; an imported answer without a model says so; the diff picker lists each run once;
    blockquotes look like quotes; the facts line ends its row; admin pages ask for no /favicon.ico."""
    from branches import services as branches
    from comparisons import services as compare
    from comparisons.services import VariantSpec
    from tests.ui.test_chat_ux import _staff_user

    user = _staff_user()
    job = ImportJobFactory(owner=user, filename="conversations.json", status="succeeded", imported=0, skipped=1,
                           report={"imported": 0, "skipped": 1, "runs": 0, "messages": 0, "seconds": 0.1,
                                   "format": "chatgpt", "skipped_items": [{
                                       "where": "[0]", "source_id": "abc", "title": "Trip",
                                       "reason": "already imported (session 1); import again with --again"}]})
    session = SessionFactory(owner=user, title="Small things")
    runs = build_chain(session, 2)
    quoted = RunFactory(session=session, parent_run=runs[-1], model="unknown", prompt_tokens=12, completion_tokens=30,
                        turn=("Quote it", "> A quoted line\n\nAnd a reply."))
    failed = RunFactory(session=session, parent_run=quoted, status=RunStatus.FAILED, prompt_tokens=71,
                        completion_tokens=0, error_message="Could not reach http://127.0.0.1:9/v1: "
                                                           "[Errno 111] Connection refused.", turn=("Again?", None))
    Session.objects.filter(pk=session.pk).update(active_run=failed)
    branches.label_create(session=session, run=failed, name="shown and labelled")
    share = branches.share_create(session=session, run=quoted)
    comparison = compare.comparison_start(  # slow enough that the first page sees its cells stream
        owner=user, session=session, branch_point=runs[0], blind=False, prompt="[[first_delay:3]] Which?",
        variants=[VariantSpec(label="A"), VariantSpec(label="B")])
    for viewport, theme in LOOKS:
        page = new_page(viewport, color_scheme=theme, bypass_csp=True)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        warnings = []
        page.on("console", lambda m, w=warnings: w.append(m.text) if m.type == "warning" else None)
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/archive/jobs/{job.pk}/")
        expect(page.locator("table.skipped")).to_contain_text("already imported")
        expect(page.locator("main")).not_to_contain_text("with --again")
        page.goto(f"{asgi_server}/compare/{comparison.pk}/")
        expect(page.locator(".cell.done")).to_have_count(2, timeout=LONG)
        page.wait_for_timeout(1500)  # a closed stream would be reported (and retried) by now
        page.goto(f"{asgi_server}/s/{session.pk}/branches/")
        copy = page.get_by_role("button", name="Copy the share link")
        copy.click()
        expect(page.locator("#announcer")).to_contain_text("Copied")
        link = page.locator(f"#link-{share.pk}").input_value()
        assert "/shared/" in link and page.evaluate("navigator.clipboard.readText()") == link
        page.goto(f"{asgi_server}/s/{session.pk}/diff/")
        values = page.locator("#diff-a option").evaluate_all("os => os.map(o => o.value).filter(Boolean)")
        assert values and len(values) == len(set(values)), values  # the shown run is labelled too: one entry
        expect(page.locator("#diff-a option", has_text="shown and labelled")).to_contain_text("shown in the chat")
        page.goto(f"{asgi_server}/s/{session.pk}/")
        settle(page)
        last = page.locator(f"#turn-{failed.pk}")
        expect(last.locator(".error")).to_contain_text("refused the connection")
        expect(last).not_to_contain_text("Errno")
        expect(last).not_to_contain_text("tokens")
        quote_turn = page.locator(f"#turn-{quoted.pk}")
        expect(quote_turn.locator(".msg.assistant .role")).to_contain_text("model not recorded")
        expect(quote_turn.locator(".msg.assistant .role")).not_to_contain_text("unknown")
        style = quote_turn.locator("blockquote").evaluate("e => [getComputedStyle(e).borderLeftWidth, "
                                                            "getComputedStyle(e).borderLeftStyle]")
        assert style[1] == "solid" and float(style[0].rstrip("px")) >= 2, style
        if viewport == DESKTOP:
            page.mouse.move(5, 300)  # the toolbars are hidden (no hover)
            facts, row = (quote_turn.locator(sel).bounding_box() for sel in (".facts", ".turn-foot"))
            assert abs((facts["x"] + facts["width"]) - (row["x"] + row["width"])) <= 2, (facts, row)
        page.screenshot(path=str(artifacts / f"daily-small-{_name(viewport, theme)}.png"), full_page=True)
        favicon = []
        page.on("request", lambda r, f=favicon: f.append(r.url) if r.url.endswith("/favicon.ico") else None)
        page.goto(f"{asgi_server}/admin/")
        page.wait_for_timeout(300)
        assert not favicon, favicon
        assert not page.problems, page.problems
        assert not warnings, warnings
        page.context.close()


def test_habits_thumbs_continue_generating_pins_and_date_groups(new_page, asgi_server, celery_worker, artifacts):
    """Thumbs up/down are stored on the run (and cleared by a second click); an answer cut at its
    token limit offers "Continue generating", whose run continues it as the same turn; sessions
    are grouped by date in the sidebar and a pinned one goes to the top under "Pinned"."""
    from django.utils import timezone

    user = UserFactory()
    now = timezone.now()
    ages = {"Old trip": 40, "Last week": 3, "Yesterday's bread": 1}
    for title, days in ages.items():
        s = SessionFactory(owner=user, title=title)
        build_chain(s, 1)
        Session.objects.filter(pk=s.pk).update(updated_at=now - timezone.timedelta(days=days))
    session = SessionFactory(owner=user, title="Long answers")
    runs = build_chain(session, 1)
    cut = RunFactory(session=session, parent_run=runs[0], finish_reason="length", turn=("Tell me all", "It began"))
    Session.objects.filter(pk=session.pk).update(active_run=cut, updated_at=now)
    old = Session.objects.get(title="Old trip")
    for viewport, theme in LOOKS:
        page = new_page(viewport, color_scheme=theme, bypass_csp=True)
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        settle(page)
        first = page.locator(f"#turn-{runs[0].pk}")
        first.hover()
        first.get_by_role("button", name="Good answer").click()
        expect(page.locator(f"#turn-{runs[0].pk}").get_by_role("button", name="Good answer")).to_have_attribute(
            "aria-pressed", "true")
        wait_for(lambda: Run.objects.get(pk=runs[0].pk).rating == 1, timeout=5, message="the thumbs up")
        bad = page.locator(f"#turn-{runs[0].pk}").get_by_role("button", name="Bad answer")
        bad.click()
        wait_for(lambda: Run.objects.get(pk=runs[0].pk).rating == -1, timeout=5, message="the thumbs down")
        expect(bad).to_have_attribute("aria-pressed", "true")  # the turn came back: a second click clears
        bad.click()
        expect(bad).to_have_attribute("aria-pressed", "false")
        wait_for(lambda: Run.objects.get(pk=runs[0].pk).rating is None, timeout=5, message="cleared")

        open_sidebar = viewport == PHONE
        if open_sidebar:
            page.locator(".drawer-toggle").click()
            page.wait_for_timeout(250)
        groups = page.locator("#sessions .side-group-title")
        expect(groups).to_have_text(["Today", "Yesterday", "Previous 7 days", re.compile(r"\w+ \d{4}")])
        page.locator(f"#srow-{old.pk}").hover()
        pin = page.get_by_role("button", name="Pin “Old trip”")
        pin.click()
        expect(groups.first).to_have_text("Pinned")
        expect(page.locator("#sessions .srow .stitle").first).to_have_text("Old trip")
        expect(page.get_by_role("button", name="Pin “Old trip”")).to_have_attribute("aria-pressed", "true")
        violations = [v for v in axe(page) if v["impact"] in ("serious", "critical")]
        assert not violations, violations
        page.screenshot(path=str(artifacts / f"daily-habits-{_name(viewport, theme)}.png"))
        page.get_by_role("button", name="Pin “Old trip”").click()  # unpin for the next look
        expect(groups.first).to_have_text("Today")
        if open_sidebar:
            page.keyboard.press("Escape")
            page.wait_for_timeout(250)
        if (viewport, theme) == LOOKS[0]:
            page.get_by_role("button", name="Continue generating").click()
            expect(page.locator("article.turn").last.locator(".turn-no")).to_contain_text("continued", timeout=LONG)
            expect(page.locator("article.turn").last.locator(".streaming")).to_have_count(0, timeout=LONG)
            new = Run.objects.filter(parent_run=cut).get()
            assert new.continues_answer and new.status == RunStatus.SUCCEEDED
            expect(page.get_by_role("button", name="Continue generating")).to_have_count(0)
        assert not page.problems, page.problems
        page.context.close()
