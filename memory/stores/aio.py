"""``AsyncMemoryStore``: the same interface with ``async`` methods, over any :class:`MemoryStore`.

Each call runs the sync store's method in a worker thread (``asgiref.sync.sync_to_async``):
a store whose class says ``thread_sensitive = True`` (the database store,
:class:`search.memory_store.DatabaseMemoryStore`) in Django's one thread-sensitive executor
(where the ORM must run when called from async code), the others in the default executor. Every
backend's sync form is thread-safe, so sync and async users may share one store object.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from asgiref.sync import sync_to_async

from .base import MemoryMessage, MemoryStore


class AsyncMemoryStore:
    """``await store.add_message(...)``, ``await store.get_history(...)``, ... over ``store``.

    ``thread_sensitive``: run the calls in Django's sync thread; default: the store's own
    ``thread_sensitive`` attribute (True for the database store)."""

    def __init__(self, store: MemoryStore, *, thread_sensitive: bool | None = None):
        self.store = store
        self._thread_sensitive = (bool(getattr(store, "thread_sensitive", False)) if thread_sensitive is None
                                  else thread_sensitive)

    def _run(self, fn, *args, **kwargs):
        return sync_to_async(fn, thread_sensitive=self._thread_sensitive)(*args, **kwargs)

    async def add_message(self, message: MemoryMessage | dict) -> MemoryMessage:
        return await self._run(self.store.add_message, message)

    async def add_messages(self, messages: Iterable[MemoryMessage | dict]) -> list[MemoryMessage]:
        return await self._run(self.store.add_messages, list(messages))

    async def get_history(self, limit: int | None = None, offset: int = 0, roles: Iterable[str] | None = None
                          ) -> list[MemoryMessage]:
        return await self._run(self.store.get_history, limit, offset, roles)

    async def clear(self) -> None:
        await self._run(self.store.clear)

    async def get_context_window(self, max_tokens: int) -> list[MemoryMessage]:
        return await self._run(self.store.get_context_window, max_tokens)

    async def search(self, query: str, top_k: int = 5) -> list[MemoryMessage]:
        return await self._run(self.store.search, query, top_k)

    async def filter(self, *, metadata: dict | None = None, since: datetime | None = None,
                     until: datetime | None = None, roles: Iterable[str] | None = None,
                     limit: int | None = None) -> list[MemoryMessage]:
        return await self._run(self.store.filter, metadata=metadata, since=since, until=until, roles=roles, limit=limit)

    async def count(self) -> int:
        return await self._run(len, self.store)
