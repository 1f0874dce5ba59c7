"""The endpoint client is built by the installed ``openai`` SDK (2.x on httpx or 3.x on httpx2) and
makes real calls; the health check means "answers a completion", not only "lists models"."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from connections.endpoint import SDK_HTTP, Endpoint, answers, probe
from engine.llm import describe_error, is_transient
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


def test_the_sdk_http_library_is_the_one_the_installed_sdk_is_built_on():
    major = int(openai.__version__.split(".")[0])
    assert SDK_HTTP.__name__ == ("httpx2" if major >= 3 else "httpx")
    assert issubclass(openai.DefaultHttpxClient, SDK_HTTP.Client)


def test_a_real_streamed_call_through_the_endpoint_client(llm_server):
    endpoint = Endpoint(name="fake", base_url=llm_server.base_url, read_timeout=10)
    stream = endpoint.client().chat.completions.create(
        model="fake-model", stream=True, messages=[{"role": "user", "content": "[[reply:one two three]]"}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "one two three"
    assert llm_server.requests[-1]["body"]["stream"] is True


def test_the_transports_own_errors_are_classified_whatever_the_sdk_line():
    """A stream cut mid-answer is raised by the SDK's transport (httpx or httpx2), not wrapped by the SDK."""
    endpoint = Endpoint(name="fake", base_url="http://127.0.0.1:9/v1")
    assert describe_error(SDK_HTTP.RemoteProtocolError("peer closed"), endpoint)[0] == "broken_stream"
    assert describe_error(SDK_HTTP.ReadTimeout("slow"), endpoint)[0] == "timeout"
    assert is_transient(SDK_HTTP.ConnectTimeout("slow"))


def test_a_refused_connection_is_transient_and_readable():
    endpoint = Endpoint(name="gone", base_url="http://127.0.0.1:9/v1", read_timeout=2)
    with pytest.raises(openai.APIConnectionError) as caught:
        endpoint.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert is_transient(caught.value)
    assert describe_error(caught.value, endpoint) == ("connection_error", "Could not reach the connection “gone” "
                                                                          "(http://127.0.0.1:9/v1).")


def test_the_local_model_connection_says_it_is_restarting(settings):
    settings.ARBOR_LOCAL_MODEL_URL = "http://127.0.0.1:9/v1"
    endpoint = Endpoint(name="Default", base_url="http://127.0.0.1:9/v1/", read_timeout=2)
    with pytest.raises(openai.APIConnectionError) as caught:
        endpoint.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert "local model is restarting" in describe_error(caught.value, endpoint)[1]


class _ListsButCannotAnswer(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "listed-model", "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(500, {"error": {"message": "model failed to load"}})


@pytest.fixture
def lists_but_cannot_answer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ListsButCannotAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_listing_models_is_not_answering(lists_but_cannot_answer):
    endpoint = Endpoint(name="half", base_url=lists_but_cannot_answer, read_timeout=5)
    assert probe(endpoint, timeout=5).health == "ok"
    answer = answers(endpoint, "listed-model", timeout=5)
    assert answer.health == "error"
    assert "HTTP 500" in answer.message


def test_check_makes_a_one_token_completion(llm_server, lists_but_cannot_answer, user):
    from connections.services import connection_check

    good = ConnectionFactory(owner=user, name="good", base_url=llm_server.base_url)
    check = connection_check(connection=good)
    assert check.health == "ok", check.message
    assert llm_server.requests[-1]["body"]["max_tokens"] == 1
    bad = ConnectionFactory(owner=user, name="half", base_url=lists_but_cannot_answer)
    check = connection_check(connection=bad)
    bad.refresh_from_db()
    assert (check.health, bad.health) == ("error", "error")
    assert "HTTP 500" in bad.health_message
