"""Calls to the model: every call goes through the official ``openai`` SDK to the
OpenAI-compatible endpoint at ``settings.OPENAI_BASE_URL`` (OpenAI, vLLM, Ollama, llama.cpp server).

The SDK's own retries are off: retries with backoff for transient errors are Celery's, in the
task decorator (see :mod:`conversations.tasks`), so that a retry is visible in the run's state.
"""

from __future__ import annotations

import contextlib
from functools import cache

import httpx
import openai
from django.conf import settings


class TransientModelError(Exception):
    """The model endpoint failed in a way that may pass: HTTP 429, 5xx, connect/read timeout."""


@cache
def _client(base_url: str, api_key: str, connect: float, read: float) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
    )


def get_client() -> openai.OpenAI:
    return _client(
        settings.OPENAI_BASE_URL,
        settings.OPENAI_API_KEY,
        settings.ARBOR_MODEL_CONNECT_TIMEOUT,
        settings.ARBOR_MODEL_READ_TIMEOUT,
    )


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying with backoff: 408/409/429/5xx, timeouts, refused connections."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, httpx.TimeoutException))


def is_timeout(exc: BaseException) -> bool:
    """True when the endpoint did not answer in time (connect or read timeout)."""
    return isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException))


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(type, message)`` a person can read, for a run's ``error``."""
    if isinstance(exc, openai.APIStatusError):
        body = ""
        with contextlib.suppress(Exception):  # the body is a courtesy
            body = exc.response.text[:300]
        return "http_error", f"The model endpoint answered HTTP {exc.status_code}. {body}".strip()
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return "timeout", "The model endpoint did not answer in time."
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error", f"Could not reach the model endpoint at {settings.OPENAI_BASE_URL}."
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return "broken_stream", "The model's stream broke off before the answer was complete."
    if isinstance(exc, (ValueError, KeyError, TypeError, IndexError)):
        return "malformed_response", f"The model endpoint sent a response Arbor could not read: {exc}"
    return type(exc).__name__, str(exc) or type(exc).__name__
