"""Token counting without downloads.

Order of preference for a model served at an OpenAI-compatible ``base_url``:

1. the server's own tokenizer — llama-cpp-python's ``POST /extras/tokenize/count`` or llama.cpp
   server's ``POST /tokenize`` — exact for the local model;
2. an estimate: ``ceil(characters / chars_per_token)``, where ``chars_per_token`` starts at 4.0
   (the usual figure for English BPE vocabularies) and is corrected towards the ratio seen in the
   usage the endpoint reports (:meth:`TokenCounter.observe`).

Counting errors against reported usage are measured by ``bench/`` and reported there.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import httpx

from .lazy import per_process

# Tokens a chat template adds around each message when counting a context from its messages:
# ChatML (SmolLM2, Qwen, ...) wraps each in ``<|im_start|>role\n … <|im_end|>\n`` = 5 tokens with
# SmolLM2's tokenizer (measured with the server's /extras/tokenize); OpenAI documents 3 for its
# models, so 5 errs on the safe side there.
PER_MESSAGE_OVERHEAD = 5
# ... and one more for an assistant message in the history (measured: the served SmolLM2 context
# grows by content + 6 tokens per earlier assistant message, + 5 per user or system message).
ROLE_OVERHEAD = {"assistant": 6}
# Tokens that open the reply (``<|im_start|>assistant\n`` in ChatML: 4 with SmolLM2), once per context.
REPLY_PRIMING = 4
# Bounds of the corrected estimate (characters per token).
MIN_CHARS_PER_TOKEN = 1.5
MAX_CHARS_PER_TOKEN = 4.5
# Remote counts kept per counter (text → tokens), so a long history is not re-sent to the tokenizer.
CACHE_SIZE = 4096


@dataclass
class TokenCounter:
    """Counts tokens for one endpoint. Thread-safe; one instance per base URL (:func:`counter_for`)."""

    base_url: str
    chars_per_token: float = 4.0
    timeout: float = 2.0
    _mode: str | None = None  # "llama_cpp_python", "llama_cpp", or "estimate"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: OrderedDict = field(default_factory=OrderedDict)

    @property
    def _root(self) -> str:
        root = self.base_url.rstrip("/")
        return root[: -len("/v1")] if root.endswith("/v1") else root

    def _probe(self) -> str:
        if self._mode is not None:
            return self._mode
        with self._lock:
            if self._mode is None:
                self._mode = "estimate"
                for mode in ("llama_cpp_python", "llama_cpp"):
                    try:
                        if self._remote_count("probe", mode) is not None:
                            self._mode = mode
                            break
                    except httpx.HTTPError:
                        continue
        return self._mode

    def _remote_count(self, text: str, mode: str) -> int | None:
        if mode == "llama_cpp_python":
            r = httpx.post(f"{self._root}/extras/tokenize/count", json={"input": text}, timeout=self.timeout)
            if r.status_code == 200 and "count" in r.json():
                return int(r.json()["count"])
        elif mode == "llama_cpp":
            r = httpx.post(f"{self._root}/tokenize", json={"content": text}, timeout=self.timeout)
            if r.status_code == 200 and "tokens" in r.json():
                return len(r.json()["tokens"])
        return None

    @property
    def mode(self) -> str:
        """``llama_cpp_python``, ``llama_cpp`` (the server's tokenizer) or ``estimate``."""
        return self._probe()

    @property
    def exact(self) -> bool:
        """True when counts come from the server's own tokenizer."""
        return self._probe() != "estimate"

    def estimate(self, text: str) -> int:
        return estimate_tokens(text, self.chars_per_token)

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no template overhead)."""
        if not text:
            return 0
        mode = self._probe()
        if mode != "estimate":
            with self._lock:
                if text in self._cache:
                    self._cache.move_to_end(text)
                    return self._cache[text]
            try:
                counted = self._remote_count(text, mode)
            except httpx.HTTPError:
                counted = None
            if counted is not None:
                with self._lock:
                    self._cache[text] = counted
                    if len(self._cache) > CACHE_SIZE:
                        self._cache.popitem(last=False)
                return counted
        return self.estimate(text)

    def count_messages(self, messages: list[dict]) -> int:
        """Tokens of a chat context: each message's content and tool calls plus template overhead,
        plus the reply primer."""
        total = REPLY_PRIMING
        for message in messages:
            total += overhead_for(message.get("role")) + self.count(message.get("content") or "")
            if message.get("tool_calls"):
                total += self.count(json.dumps(message["tool_calls"]))
        return total

    def observe(self, text_chars: int, reported_tokens: int) -> None:
        """Correct the estimate with a usage figure the endpoint reported for ``text_chars`` characters
        (an exponential moving average, weight 0.2). The ratio stays within
        [``MIN_CHARS_PER_TOKEN``, ``MAX_CHARS_PER_TOKEN``]: an estimate more optimistic than real BPE
        vocabularies give (about 4–4.5 characters a token for English) would let a context overflow."""
        if reported_tokens > 0 and text_chars > 0:
            seen = text_chars / reported_tokens
            ratio = 0.8 * self.chars_per_token + 0.2 * seen
            self.chars_per_token = min(MAX_CHARS_PER_TOKEN, max(MIN_CHARS_PER_TOKEN, ratio))


def overhead_for(role: str | None) -> int:
    """Template tokens around one message of ``role`` (see ``PER_MESSAGE_OVERHEAD``)."""
    return ROLE_OVERHEAD.get(role or "", PER_MESSAGE_OVERHEAD)


def estimate_tokens(text: str, chars_per_token: float = 4.0) -> int:
    """Tokens in ``text`` by the uncorrected estimate (characters ÷ 4, rounded up): what a message
    stores as its ``token_count`` when it is written before any model call counted it."""
    return math.ceil(len(text) / chars_per_token) if text else 0


@per_process
def counter_for(base_url: str) -> TokenCounter:
    """The token counter of the endpoint at ``base_url``: one per base URL and process."""
    return TokenCounter(base_url=base_url)


def configured_context_window(model: str) -> int:
    """Tokens of ``model``'s context window as configured: ``settings.ARBOR_MODEL_CONTEXT_WINDOWS``
    (the name as given, then lower-cased), else ``settings.ARBOR_DEFAULT_CONTEXT_WINDOW``. A model
    connection's own figure for the model comes first (``memory.policy.context_window_for``)."""
    from django.conf import settings  # here: the counters above work without Django (scripts, benches)

    windows = settings.ARBOR_MODEL_CONTEXT_WINDOWS
    return windows.get(model) or windows.get((model or "").lower()) or settings.ARBOR_DEFAULT_CONTEXT_WINDOW
