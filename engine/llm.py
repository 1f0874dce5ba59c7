"""Calls to the model: every call goes through the official ``openai`` SDK to the OpenAI-compatible
endpoint of a model connection (OpenAI, vLLM, Ollama, llama.cpp server; see :mod:`connections`).
A run's connection is its agent's (copied at the start); none means the default connection,
``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``.

The SDK's own retries are off: retries with backoff for transient errors are Celery's, in the
task decorator (see :mod:`conversations.tasks`), so that a retry is visible in the run's state.
"""

from __future__ import annotations

import contextlib

import openai
from django.conf import settings

from connections.endpoint import SDK_HTTP, Endpoint
from connections.models import Connection, ConnectionUnusable
from connections.selectors import connection_named, endpoint_for
from core.redact import scrub


class TransientModelError(Exception):
    """The model endpoint failed in a way that may pass: HTTP 429, 5xx, connect/read timeout."""


class FirstTokenTimeout(TimeoutError):
    """The model sent no first token (text or tool call) within ``ARBOR_FIRST_TOKEN_TIMEOUT``
    seconds of the request: a timeout (retried once, as a hung model)."""


def summariser_endpoint(strategy: dict, *, owner_id: int | None, connection: Connection | None) -> Endpoint:
    """Where a summary is written: the connection the policy's ``summarize`` strategy names (by
    name, among those the agent's owner may use), else ``connection`` (the calling run's)."""
    named = (strategy.get("connection") or "").strip()
    if not named:
        return endpoint_for(connection)
    found = connection_named(owner_id, named)
    if found is None:
        raise ConnectionUnusable(f"The compaction policy names the connection “{named}”, which does not exist.")
    return endpoint_for(found)


def get_client(endpoint: Endpoint) -> openai.OpenAI:
    """The SDK client of ``endpoint`` (one per endpoint and process)."""
    return endpoint.client()


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying with backoff: 408/409/429/5xx, timeouts, refused connections."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, SDK_HTTP.TimeoutException,
                            FirstTokenTimeout))


def is_timeout(exc: BaseException) -> bool:
    """True when the endpoint did not answer in time (connect or read timeout)."""
    return isinstance(exc, (openai.APITimeoutError, SDK_HTTP.TimeoutException, FirstTokenTimeout))


LOCAL_MODEL_RESTARTING = ("The local model is restarting (its server stopped and the supervisor is starting it "
                          "again); try again in a few seconds.")


def _is_local_model(endpoint: Endpoint | None) -> bool:
    """True when ``endpoint`` is the local model server ``make run`` supervises (``ARBOR_LOCAL_MODEL_URL``)."""
    local = (settings.ARBOR_LOCAL_MODEL_URL or "").rstrip("/")
    return bool(local) and endpoint is not None and endpoint.base_url.rstrip("/") == local


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_error(exc: BaseException, endpoint: Endpoint | None = None) -> tuple[str, str]:
    """``(type, message)`` a person can read, for a run's ``error``; with ``endpoint``, the message
    names its connection (and URL, password masked). The endpoint's key and header values, and
    any credential (:func:`core.redact.scrub_credentials`), never appear in it, even when its
    answer echoes them. A restricted endpoint's answer body is not quoted at all (its user sees
    the status and a generic reason: :mod:`connections.guard`)."""
    where = "the model endpoint"
    if endpoint is not None:
        where = f"the connection “{endpoint.name}” ({endpoint.describe()['base_url']})"
    secrets = [endpoint.api_key, *(v for _, v in endpoint.headers)] if endpoint else []
    if isinstance(exc, ConnectionUnusable):
        return "connection_unusable", str(exc)
    if isinstance(exc, openai.APIStatusError):
        body = ""
        with contextlib.suppress(Exception):  # the body is a courtesy
            body = "" if endpoint is not None and endpoint.restricted else exc.response.text[:300]
        return "http_error", scrub(f"{_upper(where)} answered HTTP {exc.status_code}. {body}".strip(), secrets)
    if isinstance(exc, FirstTokenTimeout):
        return "timeout", f"{_upper(where)} {exc}"
    if isinstance(exc, (openai.APITimeoutError, SDK_HTTP.TimeoutException)):
        return "timeout", f"{_upper(where)} did not answer in time."
    restarting = _is_local_model(endpoint)
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error", LOCAL_MODEL_RESTARTING if restarting else f"Could not reach {where}."
    if isinstance(exc, (SDK_HTTP.RemoteProtocolError, SDK_HTTP.ReadError)):
        if restarting:
            return "broken_stream", f"The local model stopped mid-answer. {LOCAL_MODEL_RESTARTING}"
        return "broken_stream", f"The model's stream from {where} broke off before the answer was complete."
    if isinstance(exc, (ValueError, KeyError, TypeError, IndexError)):
        return "malformed_response", scrub(f"The model endpoint sent a response Arbor could not read: {exc}", secrets)
    return type(exc).__name__, scrub(str(exc) or type(exc).__name__, secrets)
