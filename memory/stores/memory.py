"""``InMemoryMemoryStore``: a Python list behind a lock, optionally capped by messages and tokens."""

from __future__ import annotations

import itertools
from dataclasses import replace

from .base import EVICTIONS, MemoryFull, MemoryMessage, MemoryStore, tool_groups


class InMemoryMemoryStore(MemoryStore):
    """Messages in this process's memory; gone when it exits. Safe across threads (one lock).

    ``max_messages`` / ``max_tokens`` cap the store. ``eviction="fifo"`` makes room by dropping the
    oldest messages — a tool call and its results leave together, so no result outlives its call;
    ``eviction="error"`` refuses the new message with :class:`MemoryFull` instead. A single message
    larger than ``max_tokens`` is refused in both modes.
    """

    def __init__(
        self, max_messages: int | None = None, max_tokens: int | None = None, eviction: str = "fifo", **kwargs,
    ):
        super().__init__(**kwargs)
        if eviction not in EVICTIONS:
            raise ValueError(f"eviction must be one of {', '.join(EVICTIONS)}")
        for name, value in (("max_messages", max_messages), ("max_tokens", max_tokens)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None")
        self.max_messages, self.max_tokens, self.eviction = max_messages, max_tokens, eviction
        self._messages: list[MemoryMessage] = []
        self._tokens: list[int] = []
        self._ids = itertools.count(1)

    def _over(self, messages: int, tokens: int) -> bool:
        return (self.max_messages is not None and messages > self.max_messages) or (
            self.max_tokens is not None and tokens > self.max_tokens
        )

    def _append(self, message: MemoryMessage) -> MemoryMessage:
        cost = self.count_tokens(message) if self.max_tokens is not None else 0
        if self.max_tokens is not None and cost > self.max_tokens:
            raise MemoryFull(f"the message has {cost} tokens, more than max_tokens={self.max_tokens}")
        with self._lock:
            if self.eviction == "error" and self._over(len(self._messages) + 1, sum(self._tokens) + cost):
                raise MemoryFull(f"the store is full (max_messages={self.max_messages}, max_tokens={self.max_tokens})")
            stored = replace(message, id=next(self._ids))
            self._messages.append(stored)
            self._tokens.append(cost)
            while self._over(len(self._messages), sum(self._tokens)):
                first = tool_groups(self._messages)[0]
                if any(m is stored for m in first):
                    break  # never evict the message just added
                del self._messages[: len(first)]
                del self._tokens[: len(first)]
            return stored

    def _all(self) -> list[MemoryMessage]:
        with self._lock:
            return list(self._messages)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._tokens.clear()
