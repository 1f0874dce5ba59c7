"""Model connections in a real browser (Debian's Chromium under Playwright, Arbor under uvicorn, a
real Celery worker): add a connection to a second model server, refresh its models, pick one of
them in the chat's composer, send a turn — and the turn is answered by that server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from connections.models import Connection
from conversations.models import Run, RunStatus
from tests.llm_server import FakeLLMServer
from tests.support.factories import UserFactory
from tests.support.processes import wait_for
from tests.ui.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "sk-browser-Pq19-do-not-show"


@pytest.fixture
def other_server():
    server = FakeLLMServer(models=["model-b", {"id": "big-b", "max_model_len": 32768}]).start()
    yield server
    server.stop()


def test_add_a_connection_refresh_its_models_pick_one_and_send_a_turn(asgi_server, celery_worker, other_server,
                                                                    page, artifacts):
    user = UserFactory()  # before Playwright's event loop starts (see conftest)
    login(page, asgi_server, user)
    page.click("nav >> text=Connections")
    page.wait_for_url(f"{asgi_server}/connections/")
    expect(page.locator("h1")).to_have_text("Model connections")

    page.fill("#id_name", "Server B")
    page.fill("#id_base_url", other_server.base_url)
    page.fill("#id_api_key", KEY)
    page.click("text=Add and check")
    expect(page.locator("#listing p.ok")).to_contain_text("Added “Server B”: 2 models listed.")
    row = page.locator("tr", has_text="Server B")
    expect(row.locator(".health-ok")).to_contain_text("reachable")
    expect(page.locator("#id_api_key")).to_have_value("")  # write-only: the form comes back empty
    page.screenshot(path=str(artifacts / "connections-list.png"), full_page=True)

    row.locator("a", has_text="Server B").click()
    page.wait_for_url(re.compile(r"/connections/\d+/$"))
    connection = Connection.objects.get(owner=user, name="Server B")
    calls_before = other_server.state.model_list_calls
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/refresh")):
        page.click("#refresh-models")
    expect(page.locator("#models")).to_contain_text("model-b")
    expect(page.locator("#models")).to_contain_text("big-b")
    assert other_server.state.model_list_calls == calls_before + 1
    assert other_server.state.model_list_auth[-1] == f"Bearer {KEY}"
    big = connection.models.get(name="big-b")
    expect(page.locator(f"#cw-{big.pk}")).to_have_attribute("placeholder", "32768")  # as the endpoint lists it
    page.fill(f"#cw-{big.pk}", "16000")
    with page.expect_response(lambda r: r.request.method == "POST" and "/models/" in r.url):
        page.locator(f"#model-{big.pk}").get_by_role("button", name="Save").click()
    expect(page.locator(f"#cw-{big.pk}")).to_have_value("16000")
    big.refresh_from_db()
    assert big.context_window == 16000 and big.effective_context_window == 16000
    page.screenshot(path=str(artifacts / "connection-detail.png"), full_page=True)
    assert KEY not in page.content()

    page.click("nav >> text=Sessions")
    page.click("text=New session")
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]+/$"))
    model_b = connection.models.get(name="model-b")
    picker = page.locator("#id_agent")
    expect(picker.locator(f'option[value="model:{model_b.pk}"]')).to_have_text("Server B · model-b")
    picker.select_option(f"model:{model_b.pk}")
    page.fill("#id_input", "hello from the browser")
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.click(".composer button.send")
    answer = page.locator("article.turn").last.locator(".msg.assistant")
    expect(answer.locator(".content")).to_have_text("Echo: hello from the browser", timeout=20_000)
    expect(answer.locator(".role")).to_contain_text("Server B · model-b")
    expect(page.locator("#id_agent")).to_have_value(f"model:{model_b.pk}")  # the choice stays for the next turn
    page.screenshot(path=str(artifacts / "connection-turn.png"), full_page=True)

    run = wait_for(lambda: Run.objects.filter(session__owner=user, status=RunStatus.SUCCEEDED).first(), 20,
                   message="the run")
    assert (run.connection_id, run.model) == (connection.pk, "model-b")
    sent = [r for r in other_server.requests if "messages" in r["body"]]
    assert len(sent) == 1 and sent[0]["body"]["model"] == "model-b" and sent[0]["authorization"] == f"Bearer {KEY}"
    assert sent[0]["body"]["messages"][-1]["content"] == "hello from the browser"
    assert page.problems == [], page.problems
