"""A scriptable OpenAI-compatible model server on loopback, for tests and benchmarks.

Real HTTP and real SSE (``text/event-stream``, ``data: {...}`` chunks, ``data: [DONE]``), served by
the standard library's ``ThreadingHTTPServer`` on 127.0.0.1. The reply is scripted by directives in
the last user message, so a worker in another process can be steered without shared state:

==========================  ========================================================================
``[[reply:TEXT]]``          answer TEXT (default: ``Echo: <last user message without directives>``)
``[[tokens:N]]``            answer ``w0 w1 … w(N-1)``
``[[canned:N]]``            answer the N-th text of the list last sent to ``POST /_canned`` (varied
                            text for benchmarks without putting it in the input)
``[[delay:S]]``             S seconds between tokens (default 0.005)
``[[first_delay:S]]``       S seconds before the first token
``[[status:CODE]]``         answer HTTP CODE with a JSON error body, no stream
``[[fail_first:N]]``        the first N requests with this exact input get HTTP 503, later ones succeed
``[[break_after:K]]``       send K tokens, then close the connection (no finish_reason, no [DONE])
``[[malformed]]``           send one chunk that is not JSON
``[[hang]]``                send the headers, then nothing for 120 s
``[[garbage]]``             answer HTTP 200 with an HTML page instead of a chat completion
``[[no_usage]]``            leave out the usage chunk (as llama.cpp's server does)
``[[echo_auth:CODE]]``      answer HTTP CODE with a body quoting the ``Authorization`` and
                            ``Proxy-Authorization`` headers it got (an endpoint that leaks them)
``[[redirect:URL]]``        answer ``302 Found`` to URL
``[[tool:NAME:ARGS]]``      answer with a call of tool NAME with ARGS (JSON, no ``]]`` inside) while
                            the last message is not a tool result; repeat it for parallel calls
``[[tool_loop]]``           with ``[[tool:…]]``: ask for the tool calls every round (a model that
                            never stops calling tools), unless the request says ``tool_choice: none``
==========================  ========================================================================

``POST /_canned`` with a JSON list of strings sets the texts ``[[canned:N]]`` answers.

Every request body is kept; ``GET /_requests`` returns them, ``POST /_reset`` clears them. For
each streamed reply the server records ``first_token_sent`` (``time.time()``) in that log. Each
record also keeps the ``authorization`` header and every ``x-*`` header.

``GET /v1/models`` lists ``FakeLLMServer(models=...)`` (default: ``fake-model``); entries may carry
extra fields (``{"id": "big", "max_model_len": 32768}``, as vLLM lists them). Those calls are
counted in ``model_list_calls`` (with their ``authorization`` header in ``model_list_auth``). With
``models_redirect`` set (a URL), ``GET /v1/models`` answers ``302`` to it instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIRECTIVE = re.compile(r"\[\[(\w+)(?::(.*?))?\]\]", re.S)


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content") or ""
            if isinstance(content, list):
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content
    return ""


def parse_script(messages: list[dict]) -> tuple[dict, str]:
    text = _last_user_text(messages)
    script = {name: (value if value is not None else True) for name, value in DIRECTIVE.findall(text)}
    return script, DIRECTIVE.sub("", text).strip()


def _scripted_tool_calls(body: dict, messages: list[dict]) -> list[dict]:
    """The tool calls ``[[tool:NAME:ARGS]]`` directives ask for in this round (none once the last
    message is a tool result, unless ``[[tool_loop]]``; never when ``tool_choice`` is ``none``)."""
    text = _last_user_text(messages)
    found = DIRECTIVE.findall(text)
    specs = [value for name, value in found if name == "tool" and value]
    if not specs or body.get("tool_choice") == "none":
        return []
    looping = any(name == "tool_loop" for name, _ in found)
    if messages and messages[-1].get("role") == "tool" and not looping:
        return []
    calls = []
    for spec in specs:
        name, _, arguments = spec.partition(":")
        calls.append({"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                      "function": {"name": name, "arguments": arguments or "{}"}})
    return calls


EMBEDDING_DIMENSIONS = 256


def hashed_embedding(text: str) -> list[float]:
    """The fake endpoint's embedding of ``text`` (see ``Handler._embeddings``)."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        vector[int.from_bytes(digest[:4], "big") % EMBEDDING_DIMENSIONS] += 1.0 if digest[4] & 1 else -1.0
    return vector


class _State:
    def __init__(self, models: list | None = None):
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.failures: dict[str, int] = {}
        self.models = [m if isinstance(m, dict) else {"id": m} for m in (models or ["fake-model"])]
        self.model_list_calls = 0
        self.model_list_auth: list[str | None] = []
        self.models_redirect: str | None = None
        self.canned: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeLLM/1.0"
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format, *args):  # quiet
        pass

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            with self.state.lock:
                self.state.model_list_calls += 1
                self.state.model_list_auth.append(self.headers.get("Authorization"))
                redirect = self.state.models_redirect
            if redirect:
                return self._redirect(redirect)
            return self._json(200, {"object": "list", "data": [{"object": "model", **m} for m in self.state.models]})
        if self.path == "/_requests":
            with self.state.lock:
                return self._json(200, {"requests": list(self.state.requests)})
        return self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/_reset":
            with self.state.lock:
                self.state.requests.clear()
                self.state.failures.clear()
            return self._json(200, {"ok": True})
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._json(400, {"error": {"message": "invalid JSON"}})
        if self.path == "/_canned":
            with self.state.lock:
                self.state.canned = [str(t) for t in body] if isinstance(body, list) else []
            return self._json(200, {"ok": True, "count": len(self.state.canned)})
        if self.path.rstrip("/") == "/v1/chat/completions":
            return self._chat(body)
        if self.path.rstrip("/") == "/v1/embeddings":
            return self._embeddings(body)
        return self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _embeddings(self, body: dict) -> None:
        """``POST /v1/embeddings``: deterministic hashed bag-of-words vectors (EMBEDDING_DIMENSIONS
        floats; each lower-cased word adds ±1 at a slot picked by its SHA-256), so texts sharing
        words are close. Not recorded in ``/_requests`` (that log is the chat calls)."""
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._json(400, {"error": {"message": "input must be a string or a list of strings"}})
        data = [{"object": "embedding", "index": i, "embedding": hashed_embedding(t)} for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        return self._json(200, {"object": "list", "data": data, "model": body.get("model", "fake-embedding"),
                                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _chat(self, body: dict) -> None:
        messages = body.get("messages") or []
        script, plain = parse_script(messages)
        record = {"body": body, "received": time.time(), "authorization": self.headers.get("Authorization"),
                  "headers": {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-")}}
        with self.state.lock:
            self.state.requests.append(record)
        if "fail_first" in script:
            key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
            with self.state.lock:
                seen = self.state.failures.get(key, 0)
                self.state.failures[key] = seen + 1
            if seen < int(script["fail_first"]):
                return self._json(503, {"error": {"message": "temporarily overloaded", "type": "server_error"}})
        if "garbage" in script:  # a proxy's error page, say: HTTP 200 but not a chat completion
            page = b"<html><body>Bad gateway (scripted)</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return None
        if "echo_auth" in script:
            seen = {h: self.headers.get(h) for h in ("Authorization", "Proxy-Authorization")}
            return self._json(int(script["echo_auth"] if script["echo_auth"] is not True else 401),
                              {"error": {"message": f"rejected credentials {seen}", "type": "scripted"}})
        if "redirect" in script:
            return self._redirect(script["redirect"])
        if "status" in script:
            code = int(script["status"])
            return self._json(code, {"error": {"message": f"scripted HTTP {code}", "type": "scripted"}})
        tool_calls = _scripted_tool_calls(body, messages)
        if tool_calls:
            return self._tool_calls(body, tool_calls, messages)
        if "tokens" in script:
            tokens = [f"w{i}" if i == 0 else f" w{i}" for i in range(int(script["tokens"]))]
        else:
            reply = script["reply"] if isinstance(script.get("reply"), str) else f"Echo: {plain}"
            if isinstance(script.get("canned"), str) and script["canned"].isdigit() and self.state.canned:
                reply = self.state.canned[int(script["canned"]) % len(self.state.canned)]
            tokens = re.findall(r"\s*\S+|\s+", reply) or [reply]
        prompt_tokens = sum(len((m.get("content") or "").split()) + 4 for m in messages)
        if not body.get("stream"):
            return self._json(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(tokens)}, "finish_reason": "stop"},
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                    "total_tokens": prompt_tokens + len(tokens),
                },
            })
        self._stream(body, script, tokens, prompt_tokens, record)

    def _tool_calls(self, body: dict, calls: list[dict], messages: list[dict]) -> None:
        """Answer with ``calls`` (finish_reason ``tool_calls``), streamed with the arguments in two
        fragments, as OpenAI does, or in one JSON body."""
        prompt_tokens = sum(len((m.get("content") or "").split()) + 4 for m in messages)
        completion_tokens = sum(len(c["function"]["arguments"]) // 4 + 3 for c in calls)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        cid, model = f"chatcmpl-{uuid.uuid4().hex}", body.get("model", "fake-model")
        if not body.get("stream"):
            return self._json(200, {
                "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": calls},
                             "finish_reason": "tool_calls"}],
                "usage": usage,
            })
        send, chunk = self._open_stream(cid, model)
        try:
            send(chunk({"role": "assistant", "content": None}))
            for index, call in enumerate(calls):
                arguments = call["function"]["arguments"]
                half = len(arguments) // 2
                send(chunk({"tool_calls": [{
                    "index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": arguments[:half]},
                }]}))
                send(chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}))
            send(chunk({}, finish="tool_calls"))
            if (body.get("stream_options") or {}).get("include_usage"):
                send({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                      "choices": [], "usage": usage})
            send("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            return

    def _open_stream(self, cid: str, model: str):
        """Send SSE headers; return ``send(payload)`` (one ``data:`` event) and ``chunk(delta, finish)``
        (a ``chat.completion.chunk``)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def send(payload) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        def chunk(delta: dict, finish=None) -> dict:
            return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        return send, chunk

    def _stream(self, body, script, tokens, prompt_tokens, record) -> None:
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        model = body.get("model", "fake-model")
        send, chunk = self._open_stream(cid, model)

        try:
            if "hang" in script:
                time.sleep(120)
                return
            send(chunk({"role": "assistant", "content": ""}))
            if "first_delay" in script:
                time.sleep(float(script["first_delay"]))
            if "malformed" in script:
                self.wfile.write(b"data: {this is not json\n\n")
                self.wfile.flush()
                return
            delay = float(script.get("delay", 0.005))
            limit = int(script["break_after"]) if "break_after" in script else None
            for i, token in enumerate(tokens):
                if limit is not None and i >= limit:
                    return  # connection closes: no finish_reason, no [DONE]
                send(chunk({"content": token}))
                if i == 0:
                    record["first_token_sent"] = time.time()
                if delay:
                    time.sleep(delay)
            if limit is not None and limit >= len(tokens):
                return
            send(chunk({}, finish="stop"))
            if "no_usage" not in script and (body.get("stream_options") or {}).get("include_usage"):
                send({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                      "choices": [],
                      "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                                "total_tokens": prompt_tokens + len(tokens)}})
            send("[DONE]")
            record["done_sent"] = time.time()
        except (BrokenPipeError, ConnectionResetError):
            return


class FakeLLMServer:
    """Start with :meth:`start`; ``base_url`` is ``http://127.0.0.1:<port>/v1``."""

    def __init__(self, port: int = 0, models: list | None = None):
        handler = type("BoundHandler", (Handler,), {"state": _State(models)})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.state = handler.state
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="fake-llm")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def requests(self) -> list[dict]:
        with self.state.lock:
            return list(self.state.requests)

    def reset(self) -> None:
        with self.state.lock:
            self.state.requests.clear()
            self.state.failures.clear()
            self.state.model_list_calls = 0
            self.state.model_list_auth.clear()
            self.state.models_redirect = None


if __name__ == "__main__":  # python -m tests.llm_server [port]
    import sys

    server = FakeLLMServer(int(sys.argv[1]) if len(sys.argv) > 1 else 8002).start()
    print(server.base_url, flush=True)
    server.thread.join()
