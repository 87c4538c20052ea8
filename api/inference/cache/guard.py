"""Serving goes on when the cache backend fails: lookups and writes are skipped, not failed.

After a failure the backend is left alone for ``retry_interval`` seconds (requests in that
window do not pay a connection timeout each), then tried again; a working call ends the outage.
The warning is logged at most once per ``warning_interval``; the observer counts every error
and every bypassed lookup. ``clear`` is the exception: an admin asking to clear a cache that
cannot be reached gets the error (HTTP 503), not a silent success.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from api.inference.cache.base import CacheBackend, CacheError, CacheObserver, CacheOperation

logger = logging.getLogger(__name__)


class GuardedCache:
    def __init__(
        self,
        backend: CacheBackend,
        observer: CacheObserver,
        *,
        retry_interval: float,
        warning_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.observer = observer
        self.retry_interval = retry_interval
        self.warning_interval = warning_interval
        self._clock = clock
        self._retry_at = 0.0  # while the clock is before this, the backend is bypassed
        self._next_warning = 0.0
        self._failing = False

    @property
    def failing(self) -> bool:
        return self._failing

    async def get(self, model: str, key: str) -> bytes | None:
        """The cached value, or ``None`` on a miss or when the backend is unavailable."""
        if self._failing and self._clock() < self._retry_at:
            self.observer.bypassed(model)
            self.observer.miss(model)
            return None
        try:
            value = await self.backend.get(key)
        except CacheError as error:
            self._failed("get", error)
            self.observer.bypassed(model)
            self.observer.miss(model)
            return None
        self._succeeded()
        if value is None:
            self.observer.miss(model)
        else:
            self.observer.hit(model)
        return value

    async def set(self, key: str, value: bytes) -> None:
        if self._failing and self._clock() < self._retry_at:
            return
        try:
            await self.backend.set(key, value)
        except CacheError as error:
            self._failed("set", error)
            return
        self._succeeded()

    async def clear(self) -> None:
        try:
            await self.backend.clear()
        except CacheError as error:
            self._failed("clear", error)
            raise
        self._succeeded()

    async def close(self) -> None:
        await self.backend.close()

    def _failed(self, operation: CacheOperation, error: CacheError) -> None:
        now = self._clock()
        self.observer.error(operation)
        self._failing = True
        self._retry_at = now + self.retry_interval
        if now >= self._next_warning:
            self._next_warning = now + self.warning_interval
            logger.warning(
                "%s cache unavailable (%s): serving without it, retrying every %.3g s",
                self.backend.name,
                error,
                self.retry_interval,
            )

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("%s cache is back", self.backend.name)
