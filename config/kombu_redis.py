"""A fix for kombu 5.7.0's Redis transport: a worker that loses Redis with unacknowledged tasks dies.

What happens (reproduced by ``tests/chaos/test_chaos_broker.py``): when the broker connection
breaks, Celery closes it; closing a Redis channel first drops its connection pools, then restores
the unacknowledged messages (``Restoring N unacknowledged message(s)``), which needs a new pool,
whose parameters come from ``channel.connection.client`` (the kombu ``Connection``). By then the
transport's ``client`` has been cleared, so ``Channel._connparams`` raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which Celery reports as an
``Unrecoverable error`` and the worker exits (kombu 5.7.0 with redis-py 8.2.0).

The fix: each Redis channel remembers its connection's parameters when it is made, and builds its
pool parameters from them when the transport's ``client`` is gone. The messages are then restored
to the broker (once it is back) and the worker reconnects. :func:`install` is called by
:mod:`config.celery`; it does nothing for a kombu whose channels have no ``_connparams``.
"""

from __future__ import annotations

import threading


def install() -> bool:
    """Patch ``kombu.transport.redis.Channel`` (once); True when it was patched."""
    try:
        from kombu.transport import redis as transport  # needs the redis package: without it, nothing to patch
    except ImportError:
        return False
    channel = transport.Channel
    if getattr(channel, "_arbor_patched", False) or not hasattr(channel, "_connparams"):
        return False
    original_init, original_connparams = channel.__init__, channel._connparams
    lock = threading.Lock()

    def __init__(self, *args, **kwargs):
        # Before the original: it may already build a client (and a pool) from the connection.
        self._arbor_conninfo = getattr(args[0] if args else kwargs.get("connection"), "client", None)
        original_init(self, *args, **kwargs)

    def _connparams(self, asynchronous=False):
        transport_ = self.connection
        remembered = getattr(self, "_arbor_conninfo", None)
        if transport_ is None or transport_.client is not None or remembered is None:
            return original_connparams(self, asynchronous)
        with lock:  # the transport's client is gone: lend it the remembered one for this call
            transport_.client = remembered
            try:
                return original_connparams(self, asynchronous)
            finally:
                transport_.client = None

    channel.__init__ = __init__
    channel._connparams = _connparams
    channel._arbor_patched = True
    return True
