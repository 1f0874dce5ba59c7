"""The dashboard in a real browser: Chromium (Debian's) driven by Playwright, against Arbor under
uvicorn, a real Celery worker and the scripted model server over real HTTP/SSE."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Run, RunStatus, Session
from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain
from tests.support.processes import wait_for
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG = 20_000  # ms: a streamed reply of a few seconds, plus a worker picking it up


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


@pytest.fixture
def chat(asgi_server, celery_worker, request):
    """A logged-in page on a new, empty session's chat; yields ``(page, base_url, user)``."""
    user = UserFactory()  # before Playwright's event loop starts (see conftest)
    page = request.getfixturevalue("page")
    login(page, asgi_server, user)
    page.click("text=New session")
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]+/$"))
    return page, asgi_server, user


def session_of(page) -> Session:
    session_id = re.search(r"/s/([0-9a-f-]+)/", page.url).group(1)
    return Session.objects.get(pk=session_id)


def acting(page, action) -> None:
    """Do ``action`` (a click that posts) and wait for the server's answer to be swapped in."""
    with page.expect_response(lambda r: r.request.method == "POST"):
        action()
    page.wait_for_load_state()


def send(page, text: str) -> None:
    page.fill("#id_input", text)
    acting(page, lambda: page.click(".composer button.send"))


def last_turn(page):
    return page.locator("article.turn").last


def wait_done(page, count: int | None = None) -> None:
    """Wait until the session has no queued or running run and the page shows none streaming
    (and, if given, ``count`` turns)."""
    session = session_of(page)
    wait_for(lambda: not Run.objects.filter(session=session, status__in=["queued", "running"]).exists(),
             timeout=LONG / 1000, message="the runs to finish")
    expect(page.locator(".streaming")).to_have_count(0, timeout=LONG)
    if count is not None:
        expect(page.locator("article.turn")).to_have_count(count, timeout=LONG)


def test_send_and_watch_the_stream(chat, artifacts):
    """A reply appears token by token (seen mid-stream), then becomes rendered markdown with facts."""
    page, _, _ = chat
    send(page, "[[tokens:60]] [[delay:0.05]]")
    stream = page.locator(".streaming .stream-text")
    expect(stream).to_contain_text("w3", timeout=LONG)
    partial = stream.inner_text()
    assert "w59" not in partial  # seen while still streaming
    expect(page.locator(".streaming .content")).to_have_attribute("aria-live", "polite")
    wait_done(page, 1)
    answer = last_turn(page).locator(".msg.assistant .content")
    expect(answer).to_have_text(words(60))
    run = Run.objects.get(session=session_of(page))
    expect(page.locator("#branch-facts")).to_contain_text(f"{run.prompt_tokens + run.completion_tokens} tokens used")
    expect(last_turn(page).locator(".facts")).to_contain_text("tokens")
    send(page, "Show me code [[reply:Here is **some** code:\n\n```python\ndef greet(name):\n"
               "    return f\"hi {name}\"\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |]]")
    wait_done(page, 2)
    expect(last_turn(page).locator(".msg.assistant .md pre .copy-code")).to_have_count(1)
    expect(last_turn(page).locator(".md pre span.k").first).to_have_text("def")
    expect(last_turn(page).locator("button.copy[data-copy^='#answer']")).to_be_visible()
    page.screenshot(path=str(artifacts / "chat.png"), full_page=True)
    assert not [p for p in page.problems if "Content Security Policy" in p or "Refused" in p], page.problems


def test_reload_mid_stream_shows_the_whole_reply(chat):
    """Reloading while a reply streams shows everything so far and the rest, with nothing doubled."""
    page, _, _ = chat
    send(page, "[[tokens:200]] [[delay:0.03]]")
    expect(page.locator(".streaming .stream-text")).to_contain_text("w20", timeout=LONG)
    page.reload()
    expect(page.locator(".streaming .stream-text")).to_contain_text("w0 w1 w2", timeout=LONG)
    wait_done(page, 1)
    expect(last_turn(page).locator(".msg.assistant .content")).to_have_text(words(200))


def test_stop_keeps_the_partial_reply(chat):
    page, _, _ = chat
    send(page, "[[tokens:400]] [[delay:0.05]]")
    expect(page.locator(".streaming .stream-text")).to_contain_text("w5", timeout=LONG)
    acting(page, lambda: page.click("button.stop"))
    wait_done(page, 1)
    expect(last_turn(page)).to_contain_text("Stopped.")
    text = last_turn(page).locator(".msg.assistant .content").inner_text()
    assert text.startswith("w0 w1") and "w399" not in text
    run = Run.objects.get(session=session_of(page))
    assert run.status == RunStatus.CANCELLED


def test_edit_makes_a_sibling_and_the_navigator_switches_branches(chat, artifacts):
    """Edit → a sibling (2/2); ‹ goes back to 1/2, and that choice survives a reload."""
    page, _, _ = chat
    send(page, "first question")
    wait_done(page, 1)
    expect(last_turn(page)).to_contain_text("Echo: first question")
    last_turn(page).get_by_role("button", name="Edit").click()
    last_turn(page).locator("details.edit textarea").fill("edited question")
    acting(page, lambda: last_turn(page).locator("details.edit button[type=submit]").click())
    wait_done(page, 1)
    expect(last_turn(page)).to_contain_text("Echo: edited question", timeout=LONG)
    expect(last_turn(page).locator(".sib-pos")).to_have_text("2/2")
    page.screenshot(path=str(artifacts / "chat-siblings.png"))
    last_turn(page).locator("button.sib.prev").click()
    expect(last_turn(page).locator(".sib-pos")).to_have_text("1/2")
    expect(last_turn(page)).to_contain_text("Echo: first question")
    page.reload()
    expect(last_turn(page).locator(".sib-pos")).to_have_text("1/2")
    expect(last_turn(page)).to_contain_text("Echo: first question")
    last_turn(page).locator("button.sib.next").focus()
    page.keyboard.press("Enter")  # keyboard reachable
    expect(last_turn(page).locator(".sib-pos")).to_have_text("2/2")


def test_regenerate_makes_a_sibling(chat):
    page, _, _ = chat
    send(page, "[[reply:the first answer]]")
    wait_done(page, 1)
    acting(page, lambda: last_turn(page).get_by_role("button", name="Regenerate").click())
    wait_done(page, 1)
    expect(last_turn(page).locator(".sib-pos")).to_have_text("2/2", timeout=LONG)
    runs = list(Run.objects.filter(session=session_of(page)).order_by("created_at"))
    assert len(runs) == 2 and runs[0].parent_run_id is None and runs[1].parent_run_id is None
    assert all(r.status == RunStatus.SUCCEEDED for r in runs)


def test_rewind_from_an_early_message_branches_there(chat):
    page, _, _ = chat
    for text in ["one", "two", "three"]:
        send(page, text)
        wait_done(page)
        expect(last_turn(page)).to_contain_text(f"Echo: {text}")
    acting(page, lambda: page.locator("article.turn").first.get_by_role("button", name="Continue from here").click())
    expect(page.locator("article.turn")).to_have_count(1)
    send(page, "a new direction")
    wait_done(page, 2)
    expect(last_turn(page)).to_contain_text("Echo: a new direction")
    expect(last_turn(page).locator(".sib-pos")).to_have_text("2/2")
    last_turn(page).locator("button.sib.prev").click()
    expect(page.locator("article.turn")).to_have_count(3)  # the old branch is still all there
    expect(last_turn(page)).to_contain_text("Echo: three")


def test_fork_to_a_new_session(chat):
    page, _, _ = chat
    for text in ["alpha", "beta"]:
        send(page, text)
        wait_done(page)
    source = session_of(page)
    page.locator("article.turn").first.get_by_role("button", name="Fork to new session").click()
    page.wait_for_url(lambda url: source.pk.hex not in url.replace("-", ""))
    expect(page.locator(".fork-note")).to_contain_text("Forked from")
    expect(page.locator("article.turn")).to_have_count(1)
    expect(page.locator("article.turn .badge.shared")).to_have_count(1)
    send(page, "gamma in the fork")
    wait_done(page, 2)
    expect(last_turn(page)).to_contain_text("Echo: gamma in the fork")
    fork = session_of(page)
    assert fork.forked_from_run.session_id == source.pk
    assert Run.objects.filter(session=source).count() == 2  # the source is untouched
    page.click(".fork-note a")
    expect(page.locator("article.turn")).to_have_count(2)


def test_tree_view_click_through(page, asgi_server, artifacts):
    """The tree shows every branch with the active path highlighted; clicking a run opens its branch."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="Planning a trip")
    runs = build_chain(session, 30)
    alt = RunFactory(session=session, parent_run=runs[3],
                     turn=("What about going by train instead?", "Trains are nice."))
    RunFactory(session=session, parent_run=alt, turn=("Which line?", "The coastal one."))
    RunFactory(session=session, parent_run=runs[3], status=RunStatus.FAILED, turn=("And by bike?", None))
    RunFactory(session=session, parent_run=runs[7], turn=("Shorter version please", "OK."))
    session.refresh_from_db()
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/tree/")
    expect(page.locator(".tree .node.active")).to_have_count(1)
    expect(page.locator(".tree .node.on-path").first).to_be_visible()
    expect(page.locator(".tree .node.st-failed")).to_have_count(1)
    page.screenshot(path=str(artifacts / "tree.png"), full_page=True)
    page.get_by_role("button", name="What about going by train instead?").click()  # a POST form
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]+/\?at="))
    expect(last_turn(page)).to_contain_text("The coastal one.")
    session.refresh_from_db()
    assert session.active_run.parent_run_id == alt.pk
    page.get_by_role("link", name="Tree").click()
    expect(page.locator(".tree .node.active")).to_contain_text("Which line?")
    expect(page.locator(".tree")).not_to_contain_text("question 15")
    page.locator(".tree .elided a").first.click()  # lazy-load an elided straight line
    expect(page.locator(".tree")).to_contain_text("question 15")


def test_another_user_gets_404(new_page, asgi_server):
    owner, stranger = UserFactory(), UserFactory()
    session = SessionFactory(owner=owner)
    run = build_chain(session, 2)[0]
    page = new_page()
    login(page, asgi_server, stranger)
    for path in [f"/s/{session.pk}/", f"/s/{session.pk}/tree/", f"/s/{session.pk}/older?before={run.pk}"]:
        assert page.goto(asgi_server + path).status == 404, path
    owner_page = new_page()
    login(owner_page, asgi_server, owner)
    assert owner_page.goto(f"{asgi_server}/s/{session.pk}/").status == 200


def test_sessions_search_rename_delete_undo(page, asgi_server):
    user = UserFactory()
    a = SessionFactory(owner=user, title="Garden ideas")
    b = SessionFactory(owner=user, title="Other")
    RunFactory(session=b, turn=("tomatoes need sun", "yes"))
    login(page, asgi_server, user)
    page.fill("#id_q", "tomatoes")
    expect(page.locator("#results .session-row")).to_have_count(1)
    expect(page.locator("#results")).to_contain_text("Other")
    page.fill("#id_q", "")
    expect(page.locator("#results .session-row")).to_have_count(2)
    row = page.locator(f"#session-{a.pk}")
    row.locator("details.rename summary").click()
    row.locator("input[name=title]").fill("Vegetable garden")
    row.locator("details.rename button").click()
    expect(page.locator(f"#session-{a.pk} .title")).to_have_text("Vegetable garden")
    page.locator(f"#session-{a.pk}").get_by_role("button", name="Delete").click()
    expect(page.locator(f"#session-{a.pk}")).to_contain_text("Deleted")
    assert Session.objects.get(pk=a.pk).deleted_at is not None
    page.locator(f"#session-{a.pk}").get_by_role("button", name="Undo").click()
    expect(page.locator(f"#session-{a.pk} .title")).to_have_text("Vegetable garden")
    wait_for(lambda: Session.objects.get(pk=a.pk).deleted_at is None, timeout=5)


def test_long_branch_loads_older_turns_on_scroll(page, asgi_server):
    """A 100-turn branch opens at its newest turns; scrolling up loads older ones in place."""
    user = UserFactory()
    session = SessionFactory(owner=user)
    build_chain(session, 100)
    login(page, asgi_server, user)
    page.goto(f"{asgi_server}/s/{session.pk}/")
    expect(page.locator("article.turn")).to_have_count(30)
    expect(last_turn(page)).to_contain_text("answer 99")
    assert page.evaluate("window.scrollY") > 0  # opened at the bottom, the newest turn in view
    page.mouse.wheel(0, -100_000)
    expect(page.locator("article.turn")).to_have_count(60, timeout=LONG)
    page.mouse.wheel(0, -100_000)
    expect(page.locator("article.turn")).to_have_count(90, timeout=LONG)
    expect(page.locator("article.turn").first).to_contain_text("answer 10")


def test_reading_works_without_javascript(chromium, asgi_server):
    """With JavaScript off: the chat, older turns, a sibling switch and the tree all work by links and forms."""
    user = UserFactory()
    session = SessionFactory(owner=user, title="No JS")
    runs = build_chain(session, 40)
    other = RunFactory(session=session, parent_run=runs[38], turn=("the other version", "other answer"))
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        login(page, asgi_server, user)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        expect(page.locator("article.turn")).to_have_count(30)
        page.get_by_role("link", name="Load older turns").click()
        expect(page.locator("article.turn").first).to_contain_text("question 0")
        page.goto(f"{asgi_server}/s/{session.pk}/")
        expect(last_turn(page).locator(".sib-pos")).to_have_text("1/2")
        last_turn(page).get_by_role("button", name="Next version").click()  # a plain form without JS
        expect(last_turn(page)).to_contain_text("other answer")
        session.refresh_from_db()
        assert session.active_run_id == other.pk
        page.get_by_role("link", name="Tree").click()
        expect(page.locator(".tree .node.active")).to_contain_text("the other version")
        page.locator(".tree .elided a").first.click()  # an elided line opens as a page of its own
        expect(page.locator(".line .node")).not_to_have_count(0)
        page.goto(f"{asgi_server}/s/{session.pk}/")
        page.fill("#id_input", "sent without javascript")
        page.click(".composer button.send")
        expect(last_turn(page)).to_contain_text("sent without javascript")  # forms post without JavaScript
    finally:
        context.close()
