"""The prediction cache's parts without a server: the memory backend's TTL and LRU bound on a
fake clock, the keys, and the guard that keeps serving while a backend fails."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from api.inference.cache import (
    CacheUnavailableError,
    GuardedCache,
    MemoryCache,
    image_key,
    text_key,
)
from api.inference.cache.keys import HASH_IN_THREAD_BYTES, image_key_off_loop, texts_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_memory_entries_expire_ttl_after_they_were_written() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=10, ttl=60.0, clock=clock)
    run(cache.set("a", b"1"))
    clock.now += 59.0
    assert run(cache.get("a")) == b"1"  # reading does not extend the entry's life
    clock.now += 1.0
    assert run(cache.get("a")) is None
    assert len(cache) == 0


def test_memory_evicts_the_least_recently_used_entry() -> None:
    cache = MemoryCache(max_entries=3, ttl=60.0, clock=Clock())
    for key in "abc":
        run(cache.set(key, key.encode()))
    assert run(cache.get("a")) == b"a"  # "b" is now the least recently used
    run(cache.set("d", b"d"))
    assert len(cache) == 3
    assert run(cache.get("b")) is None
    assert [run(cache.get(key)) for key in "acd"] == [b"a", b"c", b"d"]
    run(cache.clear())
    assert len(cache) == 0


def test_memory_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        MemoryCache(max_entries=0, ttl=1.0)
    with pytest.raises(ValueError):
        MemoryCache(max_entries=1, ttl=0.0)


def test_keys_hold_model_version_input_and_threshold() -> None:
    key = text_key("newsgroups", "computer cpu")
    assert key.for_version("1").startswith("newsgroups:1:shared:text:")
    assert key.for_version("1") != key.for_version("2")
    assert key == text_key("newsgroups", "computer cpu")
    assert key != text_key("newsgroups", "Computer cpu"), "the text is not case-folded"
    assert texts_key("newsgroups", ["ab", "c"]) != texts_key("newsgroups", ["a", "bc"])
    assert texts_key("newsgroups", ["a"]).digest != key.digest
    image = image_key("yolos", b"\xff\xd8 jpeg bytes", 0.5)
    assert image != image_key("yolos", b"\xff\xd8 jpeg bytes", 0.7)
    assert image == image_key("yolos", b"\xff\xd8 jpeg bytes", 0.5)
    assert text_key("newsgroups", "\ud800 lone surrogate").digest  # never an encoding error


def test_keys_of_different_tenants_never_meet() -> None:
    """Each user's entries are their own; no tenant (inference open to anyone) is one shared
    scope that no user's key can name."""
    jpeg = b"\xff\xd8 jpeg bytes"
    for make in (
        lambda tenant: text_key("newsgroups", "computer cpu", tenant),
        lambda tenant: texts_key("newsgroups", ["computer", "cpu"], tenant),
        lambda tenant: image_key("yolos", jpeg, 0.5, tenant),
    ):
        stored = {make(tenant).for_version("1") for tenant in (None, "1", "2", "12", "shared")}
        assert len(stored) == 5
        assert make("7").for_version("1") == make("7").for_version("1")
    assert text_key("newsgroups", "x", "1").for_version("1").startswith("newsgroups:1:user-1:")
    assert text_key("newsgroups", "x").digest == text_key("newsgroups", "x", "1").digest


def test_image_keys_hashed_off_the_loop_keep_their_tenant() -> None:
    large = b"\xff" * (HASH_IN_THREAD_BYTES + 1)
    key = run(image_key_off_loop("yolos", large, 0.5, None, "3"))
    assert key == image_key("yolos", large, 0.5, "3") and key.tenant == "3"


class FlakyBackend:
    """A backend that fails while ``down`` is set."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.data: dict[str, bytes] = {}

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise CacheUnavailableError("connection refused")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return self.data.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self._check()
        self.data[key] = value

    async def clear(self) -> None:
        self._check()
        self.data.clear()

    async def close(self) -> None:
        pass


class CountingObserver:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def hit(self, model: str) -> None:
        self.counts["hit"] += 1

    def miss(self, model: str) -> None:
        self.counts["miss"] += 1

    def bypassed(self, model: str) -> None:
        self.counts["bypassed"] += 1

    def error(self, operation: str) -> None:
        self.counts[f"error:{operation}"] += 1


def test_guard_bypasses_a_failing_backend_warns_once_per_interval_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend, observer, clock = FlakyBackend(), CountingObserver(), Clock()
    guard = GuardedCache(backend, observer, retry_interval=1.0, warning_interval=30.0, clock=clock)

    async def scenario() -> None:
        await guard.set("k", b"v")
        assert await guard.get("m", "k") == b"v"
        backend.down = True
        assert await guard.get("m", "k") is None  # fails: the backend is left alone for 1 s
        calls = backend.calls
        for _ in range(50):
            assert await guard.get("m", "k") is None
            await guard.set("k2", b"v2")
        assert backend.calls == calls, "no call during the retry interval"
        clock.now += 1.5
        assert await guard.get("m", "k") is None  # tried again, failed again: no new warning
        clock.now += 1.5
        with pytest.raises(CacheUnavailableError):
            await guard.clear()  # an admin's clear reports the failure
        backend.down = False
        clock.now += 1.5
        assert await guard.get("m", "k") == b"v"
        assert not guard.failing

    with caplog.at_level(logging.INFO, logger="api.inference.cache.guard"):
        run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "flaky cache unavailable" in warnings[0].getMessage()
    assert any("flaky cache is back" in r.getMessage() for r in caplog.records)
    assert observer.counts["hit"] == 2
    assert observer.counts["miss"] == observer.counts["bypassed"] == 52
    assert observer.counts["error:get"] == 2 and observer.counts["error:clear"] == 1
    assert observer.counts["error:set"] == 0, "writes are skipped, not tried, while failing"
