"""What a prediction-cache backend is, its errors, and who hears about hits and failures."""

from __future__ import annotations

from typing import Literal, Protocol

CacheOperation = Literal["get", "set", "clear"]


class CacheError(Exception):
    """A cache backend failed."""


class CacheUnavailableError(CacheError):
    """The backend cannot be reached or did not answer in time (Redis down, network)."""


class CacheBackend(Protocol):
    """Bytes by key, each entry expiring a fixed time after it was written, at most a bounded
    number of entries (least recently used evicted first). Failures raise :class:`CacheError`."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...

    async def clear(self) -> None: ...

    async def close(self) -> None: ...


class CacheObserver(Protocol):
    """Told about every lookup and failure (metrics); must be cheap."""

    def hit(self, model: str) -> None: ...

    def miss(self, model: str) -> None: ...

    def bypassed(self, model: str) -> None:
        """A lookup skipped because the backend is failing (also counted as a miss)."""

    def error(self, operation: CacheOperation) -> None: ...


class NullCacheObserver:
    def hit(self, model: str) -> None:
        pass

    def miss(self, model: str) -> None:
        pass

    def bypassed(self, model: str) -> None:
        pass

    def error(self, operation: CacheOperation) -> None:
        pass
