"""Memory stores for Python code: one interface (:class:`MemoryStore`, :class:`AsyncMemoryStore`),
four backends: in memory, JSONL and Redis here, and the database backend over the dashboard's
conversation tables, :class:`search.memory_store.DatabaseMemoryStore` (it lives with the
tables it reads). See README "Memory stores" for a runnable example.

>>> from memory.stores import InMemoryMemoryStore, MemoryMessage
>>> store = InMemoryMemoryStore(max_messages=100)
>>> store.add_message({"role": "user", "content": "hello"})  # doctest: +ELLIPSIS
MemoryMessage(role='user', content='hello', ...)

Backends are imported on first use, so ``import memory.stores`` stays light (the Redis one needs
the ``redis`` package).
"""

from __future__ import annotations

from importlib import import_module

from .base import MemoryFull, MemoryMessage, MemoryStore, MemoryStoreError

_LAZY = {
    "InMemoryMemoryStore": ".memory",
    "JSONLMemoryStore": ".jsonl",
    "RedisMemoryStore": ".redis",
    "AsyncMemoryStore": ".aio",
}

__all__ = ["MemoryMessage", "MemoryStore", "MemoryStoreError", "MemoryFull", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
