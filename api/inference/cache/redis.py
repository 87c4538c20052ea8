"""The shared backend: Redis (asyncio client), with the memory backend's semantics.

* Entries are plain strings ``<prefix>e:<key>`` written with ``PX`` = the TTL, so they expire
  ``ttl`` after they were written, as in memory.
* The size bound and LRU order live in a sorted set ``<prefix>lru`` (member: entry key, score:
  last use in the server's ``TIME`` microseconds, fine enough that two uses do not tie). Reads
  and writes are Lua scripts, one round trip each and atomic, so several workers sharing the
  cache cannot break the bound: a write that makes the set larger than ``max_entries`` evicts the
  least recently used entries. Members unused for longer than the TTL are dropped on each write
  (their entries have expired).
* ``clear`` deletes every key under the prefix (``SCAN`` + ``UNLINK``), never the whole database.
* Every failure (refused connection, timeout, a server error) raises
  :class:`CacheUnavailableError`. The client does not retry (an unavailable cache must not slow
  requests down) and reconnects by itself at the next call after Redis comes back.

The client is created here, in the app's lifespan; nothing connects before the first command.
"""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api.inference.cache.base import CacheUnavailableError

# KEYS: entry, index. Refresh the entry's recency when it exists.
_GET = """
local value = redis.call('GET', KEYS[1])
if value then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[2], now[1] * 1000000 + now[2], KEYS[1])
end
return value
"""

# KEYS: entry, index. ARGV: value, ttl (ms), max entries. Returns how many entries it evicted.
_SET = """
local now = redis.call('TIME')
local us = now[1] * 1000000 + now[2]
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], us, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', us - ttl * 1000)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess <= 0 then
  return 0
end
local evicted = redis.call('ZPOPMIN', KEYS[2], excess)
for i = 1, #evicted, 2 do
  redis.call('DEL', evicted[i])
end
return excess
"""

CLEAR_BATCH = 500
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisCache:
    name = "redis"

    def __init__(self, client: Redis, prefix: str, max_entries: int, ttl: float) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.client = client
        self.prefix = prefix
        self.max_entries = max_entries
        self.ttl_ms = max(1, round(ttl * 1000))
        self.index_key = f"{prefix}lru"
        self._get = client.register_script(_GET)
        self._set = client.register_script(_SET)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str, max_entries: int, ttl: float, timeout: float
    ) -> RedisCache:
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        return cls(client, prefix, max_entries, ttl)

    def _entry(self, key: str) -> str:
        return f"{self.prefix}e:{key}"

    async def _call(self, operation: str, command: Any) -> Any:
        try:
            return await command
        except (RedisError, OSError, TimeoutError) as error:
            raise CacheUnavailableError(f"redis {operation} failed: {error}") from error

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", self._get(keys=[self._entry(key), self.index_key]))
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes) -> None:
        keys = [self._entry(key), self.index_key]
        await self._call("set", self._set(keys=keys, args=[value, self.ttl_ms, self.max_entries]))

    async def clear(self) -> None:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "*"
        await self._call("clear", self._unlink_matching(pattern))

    async def _unlink_matching(self, pattern: str) -> None:
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=CLEAR_BATCH):
            batch.append(key)
            if len(batch) >= CLEAR_BATCH:
                await self.client.unlink(*batch)
                batch.clear()
        if batch:
            await self.client.unlink(*batch)

    async def ping(self) -> None:
        await self._call("ping", self.client.ping())

    async def size(self) -> int:
        """Entries in the LRU index (an upper bound on the live entries)."""
        return int(await self._call("size", self.client.zcard(self.index_key)))

    async def close(self) -> None:
        await self.client.aclose()
