"""Talking to a connection's endpoint: the ``openai`` SDK client every model call uses, the probe
(``GET /v1/models``) behind the model list, and the one-token completion behind the health check.

The SDK's own retries are off: retries with backoff for transient errors are Celery's (see
:mod:`engine.execute`), so that a retry is visible in the run's state.

Both major lines of the SDK work: 2.x is built on ``httpx``, 3.x on ``httpx2``. Nothing here passes
an HTTP library's object into the SDK; where the transport's own exceptions must be recognised (a
stream cut mid-answer is raised by the transport, not wrapped by the SDK), :data:`SDK_HTTP` is the
HTTP library the installed SDK is built on.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import time
from dataclasses import dataclass, field
from types import ModuleType

import openai
from django.conf import settings

from core.lazy import per_process
from core.redact import mask_url

from .guard import guarded_http_client

# Fields of a ``/v1/models`` entry that give its context window in tokens: vLLM's ``max_model_len``,
# OpenRouter's and LM Studio's ``context_length``, llama.cpp server's ``meta.n_ctx_train``.
WINDOW_FIELDS = ("max_model_len", "context_length", "context_window")
# What a model id looks like (``gpt-4o-mini``, ``meta-llama/Llama-3.1-8B-Instruct``, ``llama3:8b``,
# ``models/gemini-1.5-pro``, ``org/model@rev``): up to four "/"-separated parts of letters, digits
# and ``._@+-`` (each starting with a letter or digit), then one optional ``:tag``; at most 200
# characters. An id that does not look like that (markup, a passwd line, prose) is not listed.
MODEL_ID = re.compile(r"^(?=.{1,200}$)[A-Za-z0-9][\w.@+-]*(?:/[A-Za-z0-9][\w.@+-]*){0,3}(?::[\w.@+-]+)?$", re.ASCII)


def _sdk_http() -> ModuleType:
    """The HTTP library the installed SDK's client derives from (``httpx`` for openai 2.x, ``httpx2`` for 3.x)."""
    base = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.partition(".")[0])


SDK_HTTP = _sdk_http()


@dataclass(frozen=True)
class Endpoint:
    """Where one model call goes: ``base_url`` with ``api_key`` and extra ``headers``; ``name`` and
    ``connection_id`` say which connection it is (for errors and the trace)."""

    name: str
    base_url: str
    api_key: str = field(default="", repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    read_timeout: float = 60.0
    connection_id: int | None = None
    restricted: bool = False  # public addresses only (connections.guard); errors show no answer bodies

    def client(self) -> openai.OpenAI:
        """The SDK client (one per endpoint and process): connect timeout
        ``ARBOR_MODEL_CONNECT_TIMEOUT``, read timeout the connection's; no SDK retries. A
        restricted endpoint's client checks and pins the address of every request and follows no
        redirect (:mod:`connections.guard`)."""
        return _client(self.base_url, self.api_key or "sk-no-key-needed", self.headers,
                       settings.ARBOR_MODEL_CONNECT_TIMEOUT, self.read_timeout, self.restricted)

    def describe(self) -> dict:
        """What a trace records about the endpoint: ``{"connection_id", "connection", "base_url"}``,
        any password in the URL masked; never the key or the headers."""
        return {"connection_id": self.connection_id, "connection": self.name, "base_url": mask_url(self.base_url)}


# The SDK takes its HTTP client as ``http_client`` (1.x and 2.x: an httpx.Client; 3.x: httpx2's).
SDK_TAKES_HTTP_CLIENT = "http_client" in inspect.signature(openai.OpenAI.__init__).parameters


@per_process(maxsize=64)
def _client(base_url: str, api_key: str, headers: tuple, connect: float, read: float,
            restricted: bool = False) -> openai.OpenAI:
    timeout = openai.Timeout(connect=connect, read=read, write=read, pool=connect)
    extra = {}
    if restricted:
        if not SDK_TAKES_HTTP_CLIENT:
            raise RuntimeError("This openai SDK takes no http_client: restricted connections cannot be guarded.")
        extra["http_client"] = guarded_http_client(SDK_HTTP, timeout)
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        default_headers=dict(headers) or None,
        max_retries=0,
        timeout=timeout,
        **extra,
    )


@dataclass
class Probe:
    """One ``GET /v1/models``: ``health`` ``ok`` (2xx), ``error`` (another HTTP answer, or not a
    model list) or ``unreachable`` (no answer in time, refused, DNS); ``latency_ms`` from sending to
    the whole answer; ``models`` ``[{"id", "context_window"}]`` when it listed them."""

    health: str
    latency_ms: float | None
    message: str
    models: list[dict] | None = None


def _window(entry: dict) -> int | None:
    for name in WINDOW_FIELDS:
        value = entry.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    meta = entry.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int) and meta["n_ctx_train"] > 0:
        return meta["n_ctx_train"]
    return None


def _listed(body) -> list[dict]:
    """The ``{"id", "context_window"}`` of each entry of an OpenAI model list (``{"data": [...]}``)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("the answer is not an OpenAI model list ({\"data\": [...]})")
    found: dict[str, dict] = {}
    for entry in body["data"]:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and MODEL_ID.match(entry["id"].strip()):
            name = entry["id"].strip()
            found.setdefault(name, {"id": name, "context_window": _window(entry)})
    return list(found.values())


def _unreachable(endpoint: Endpoint, where: str, exc: openai.APIConnectionError, timeout: float) -> str:
    """Why ``where`` gave no HTTP answer. For a restricted endpoint one message whatever happened
    (refused, closed, not HTTP, silent, an address not allowed), so that its user cannot tell the
    ports of a host apart."""
    if endpoint.restricted:
        return f"Could not reach {where}."
    if isinstance(exc, openai.APITimeoutError):
        return f"{where} did not answer within {timeout:g} s."
    return f"Could not reach {where}: {exc.__cause__ or exc}."


def probe(endpoint: Endpoint, *, timeout: float) -> Probe:
    """``GET {base_url}/models`` with the endpoint's key and headers, within ``timeout`` seconds.
    Never raises: every failure is a :class:`Probe` saying what happened, naming the URL (masked)."""
    where = mask_url(endpoint.base_url)
    client = endpoint.client().with_options(timeout=openai.Timeout(timeout), max_retries=0)
    started = time.perf_counter()
    try:
        text = client.models.with_raw_response.list().text
        latency = (time.perf_counter() - started) * 1000
    except openai.APIStatusError as exc:
        latency = (time.perf_counter() - started) * 1000
        hint = " (the endpoint refused the API key)" if exc.status_code in (401, 403) else ""
        return Probe("error", latency, f"{where}/models answered HTTP {exc.status_code}{hint}.")
    except openai.APIConnectionError as exc:  # a timeout too (APITimeoutError)
        return Probe("unreachable", None, _unreachable(endpoint, where, exc, timeout))
    try:
        models = _listed(json.loads(text))
    except ValueError as exc:
        return Probe("error", latency, f"{where}/models answered, but {exc}.")
    return Probe("ok", latency, f"{len(models)} model{'s' if len(models) != 1 else ''} listed.", models)


def answers(endpoint: Endpoint, model: str, *, timeout: float) -> Probe:
    """One chat completion of at most 1 token from ``model`` (``POST {base_url}/chat/completions``),
    within ``timeout`` seconds: what "reachable" means on the Connections page is "answers".
    ``latency_ms`` is the whole call. Never raises; ``models`` is None."""
    where = mask_url(endpoint.base_url)
    client = endpoint.client().with_options(timeout=openai.Timeout(timeout), max_retries=0)
    started = time.perf_counter()
    try:
        client.chat.completions.create(model=model, max_tokens=1, messages=[{"role": "user", "content": "Hi"}])
    except openai.APIStatusError as exc:
        latency = (time.perf_counter() - started) * 1000
        return Probe("error", latency, f"{where}/chat/completions answered HTTP {exc.status_code} for {model}.")
    except openai.APIConnectionError as exc:  # a timeout too
        return Probe("unreachable", None, _unreachable(endpoint, where, exc, timeout))
    except (ValueError, TypeError, KeyError) as exc:  # an answer the SDK could not read
        return Probe("error", None, f"{where}/chat/completions answered, but not as a chat completion: {exc}.")
    latency = (time.perf_counter() - started) * 1000
    return Probe("ok", latency, f"{model} answered a one-token completion in {latency:.0f} ms.")
