"""The per-process lazy singleton: :func:`per_process`, for whatever a process builds once and then
shares between its threads (a Redis or model client, a loaded embedding model, a token counter).

Built on first use, not at import (a page that never streams never connects to Redis), by one
thread at a time (two threads asking at once get the same object), and again in a forked child:
a Celery prefork pool child, or a gunicorn worker, must not share its parent's sockets, locks or
threads, so the child starts empty (``os.register_at_fork``). A function with arguments keeps one
object per argument tuple (a client per base URL), at most ``maxsize`` of them (the oldest goes).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable


def per_process[T](factory: Callable[..., T] | None = None, *, maxsize: int | None = None):
    """Decorate ``factory`` (hashable arguments): the first call with given arguments
    builds the object, later calls in this process return it. ``cache_clear()`` forgets them all (the
    next call builds again; for tests and a changed setting). Usable bare or as
    ``@per_process(maxsize=64)``."""
    if factory is None:
        return functools.partial(per_process, maxsize=maxsize)

    state = {"lock": threading.Lock(), "built": {}}

    def forget() -> None:
        state["lock"] = threading.Lock()  # a lock held by another thread at the fork stays held in the child
        state["built"] = {}

    @functools.wraps(factory)
    def get(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items()))) if kwargs else args
        try:
            return state["built"][key]
        except KeyError:
            pass
        with state["lock"]:
            built = state["built"]
            if key not in built:
                if maxsize is not None and len(built) >= maxsize:
                    del built[next(iter(built))]
                built[key] = factory(*args, **kwargs)
            return built[key]

    get.cache_clear = forget
    os.register_at_fork(after_in_child=forget)
    return get
