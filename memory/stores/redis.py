"""``RedisMemoryStore``: a Redis list per memory id, written by one Lua script per message.

Keys (``prefix`` default ``arbor:memory:``): ``<prefix><memory_id>`` is a list whose items are
``"<id>|<role>|<message JSON>"``; ``<prefix><memory_id>:seq`` hands out the ids. The script
(atomic in Redis, so safe across threads and processes) takes the next id, appends, trims to
``max_messages`` (then drops tool results left at the front without their call) and refreshes the
``ttl`` of both keys. Reads are ``LRANGE`` with negative indexes, so ``get_history(limit=N)``
transfers N items, whatever the length.
"""

from __future__ import annotations

import json
from datetime import timedelta

import redis

from .base import MemoryMessage, MemoryStore, check_page, dumps, select_history

APPEND = """
local id = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], id .. '|' .. ARGV[2] .. '|' .. ARGV[1])
local max = tonumber(ARGV[3])
if max > 0 then
  redis.call('LTRIM', KEYS[1], -max, -1)
  while true do
    local first = redis.call('LINDEX', KEYS[1], 0)
    if first and string.match(first, '^%d+|tool|') and redis.call('LLEN', KEYS[1]) > 1 then
      redis.call('LPOP', KEYS[1])
    else
      break
    end
  end
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return id
"""


def _decode(item: bytes | str) -> MemoryMessage:
    text = item.decode() if isinstance(item, bytes) else item
    ident, _role, payload = text.split("|", 2)
    message = MemoryMessage.from_json(json.loads(payload))
    message.id = int(ident)
    return message


class RedisMemoryStore(MemoryStore):
    """Messages of ``memory_id`` in Redis at ``url`` (e.g. ``redis://127.0.0.1:6379/0``).

    ``ttl``: seconds (or a timedelta) after the last write when the whole memory expires; None
    keeps it. ``max_messages``: keep only the newest N (the oldest leave first). ``client``: an
    existing ``redis.Redis`` to use instead of ``url``. Thread- and process-safe.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", ttl: int | timedelta | None = None,
                 max_messages: int | None = None, *, memory_id: str = "default", prefix: str = "arbor:memory:",
                 client: redis.Redis | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(ttl, timedelta):
            ttl = int(ttl.total_seconds())
        if ttl is not None and (not isinstance(ttl, int) or ttl < 1):
            raise ValueError("ttl must be a positive number of seconds or None")
        if max_messages is not None and (not isinstance(max_messages, int) or max_messages < 1):
            raise ValueError("max_messages must be a positive integer or None")
        if not memory_id or "|" in memory_id:
            raise ValueError("memory_id must be a non-empty string without '|'")
        self.url, self.ttl, self.max_messages, self.memory_id = url, ttl, max_messages, memory_id
        self.client = client or redis.Redis.from_url(url)
        self.key = f"{prefix}{memory_id}"
        self.seq_key = f"{self.key}:seq"
        self._append_script = self.client.register_script(APPEND)

    def _append(self, message: MemoryMessage) -> MemoryMessage:
        ident = self._append_script(keys=[self.key, self.seq_key],
                                    args=[dumps(message), message.role, self.max_messages or 0, self.ttl or 0])
        message.id = int(ident)
        return message

    def _all(self) -> list[MemoryMessage]:
        return [_decode(item) for item in self.client.lrange(self.key, 0, -1)]

    def __len__(self) -> int:
        return int(self.client.llen(self.key))

    def get_history(self, limit=None, offset=0, roles=None) -> list[MemoryMessage]:
        check_page(limit, offset)
        if roles is not None:
            return select_history(self._all(), limit=limit, offset=offset, roles=roles)
        if limit == 0:
            return []
        start = 0 if limit is None else -(offset + limit)
        return [_decode(item) for item in self.client.lrange(self.key, start, -(offset + 1))]

    def clear(self) -> None:
        self.client.delete(self.key, self.seq_key)
