"""The login limiter's memory store (windows, the key cap, known addresses), its keys, and the
fallback when the shared store fails."""

from __future__ import annotations

import asyncio

import pytest

from api.accounts.login_limits import (
    AttemptKeys,
    AttemptStoreUnavailableError,
    Blocked,
    LoginLimiter,
    LoginLimits,
    MemoryAttemptStore,
    RegisterLimits,
    account_id,
    ip_bucket,
    registration_key,
)
from api.errors import TooManyLoginAttemptsError, TooManyRegistrationsError

LIMITS = LoginLimits(window_s=60.0, max_per_account=3, max_per_ip=5, known_ip_ttl_s=3600.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keys(email: str = "ada@example.com", ip: str = "203.0.113.1") -> AttemptKeys:
    return AttemptKeys.for_login(email, ip)


def test_the_account_window_blocks_then_expires() -> None:
    async def check() -> None:
        clock = Clock()
        store = MemoryAttemptStore(100, clock)
        for _ in range(3):
            assert await store.acquire(keys(), LIMITS) is None
            clock.now += 10
        assert await store.acquire(keys(), LIMITS) == Blocked("account", 30.0)
        clock.now += 30
        assert await store.acquire(keys(), LIMITS) is None

    asyncio.run(check())


def test_the_ip_limit_spans_accounts_and_success_gives_its_slot_back() -> None:
    async def check() -> None:
        store = MemoryAttemptStore(100, Clock())
        for number in range(4):
            assert await store.acquire(keys(f"u{number}@example.com"), LIMITS) is None
        assert await store.acquire(keys("ok@example.com"), LIMITS) is None
        await store.succeeded(keys("ok@example.com"), LIMITS)
        assert await store.acquire(keys("u9@example.com"), LIMITS) is None
        blocked = await store.acquire(keys("u10@example.com"), LIMITS)
        assert blocked is not None and blocked.scope == "ip"
        other_ip = keys("u10@example.com", "198.51.100.2")
        assert await store.acquire(other_ip, LIMITS) is None

    asyncio.run(check())


def test_a_known_address_has_its_own_account_budget_until_it_expires() -> None:
    async def check() -> None:
        clock = Clock()
        store = MemoryAttemptStore(100, clock)
        home = keys(ip="198.51.100.7")
        await store.succeeded(home, LIMITS)
        for _ in range(3):
            assert await store.acquire(keys(ip="203.0.113.66"), LIMITS) is None
        assert (await store.acquire(keys(ip="192.0.2.1"), LIMITS)) == Blocked("account", 60.0)
        for _ in range(3):  # the known address: its own count, not the attacker's
            assert await store.acquire(home, LIMITS) is None
        blocked = await store.acquire(home, LIMITS)
        assert blocked is not None and blocked.scope == "account"
        clock.now += LIMITS.known_ip_ttl_s  # forgotten: the account's (new) count applies
        for _ in range(3):
            assert await store.acquire(keys(ip="203.0.113.66"), LIMITS) is None
        assert (await store.acquire(home, LIMITS)) == Blocked("account", 60.0)

    asyncio.run(check())


def test_memory_is_bounded_expired_entries_go_first_then_the_oldest() -> None:
    async def check() -> None:
        clock = Clock()
        store = MemoryAttemptStore(10, clock)
        limits = LoginLimits(60.0, 3, 1000, 3600.0)
        for number in range(50):
            await store.acquire(keys(f"u{number}@example.com", f"10.0.{number}.1"), limits)
            await store.succeeded(keys(f"v{number}@example.com", f"10.1.{number}.1"), limits)
            assert store.tracked <= 20  # ten counters, ten known addresses
        clock.now += 61
        await store.acquire(keys("late@example.com", "10.9.9.9"), limits)
        assert len(store._counters) == 3  # the expired ones were dropped, not just capped

    asyncio.run(check())


def test_keys_normalise_emails_and_addresses() -> None:
    assert account_id(" Ada@Example.COM ") == account_id("ada@example.com")
    assert "ada" not in account_id("ada@example.com")
    assert ip_bucket("203.0.113.1") == "203.0.113.1"
    assert ip_bucket("::ffff:203.0.113.1") == "203.0.113.1"
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:bbbb::9")
    assert ip_bucket("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert ip_bucket("2001:db8:1:3::1") != ip_bucket("2001:db8:1:2::1")
    assert ip_bucket("testclient") == "testclient"
    assert ip_bucket("") == "unknown"


class FailingStore:
    name = "redis"

    def __init__(self) -> None:
        self.calls = 0

    async def acquire(self, keys: AttemptKeys, limits: LoginLimits) -> Blocked | None:
        self.calls += 1
        raise AttemptStoreUnavailableError("down")

    async def succeeded(self, keys: AttemptKeys, limits: LoginLimits) -> None:
        self.calls += 1
        raise AttemptStoreUnavailableError("down")

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        self.calls += 1
        raise AttemptStoreUnavailableError("down")

    async def close(self) -> None:
        pass


def test_a_failing_shared_store_falls_back_to_memory_and_is_retried_later() -> None:
    async def check() -> None:
        clock = Clock()
        failing = FailingStore()
        limiter = LoginLimiter(
            failing,
            LIMITS,
            fallback=MemoryAttemptStore(100, clock),
            retry_interval=5.0,
            clock=clock,
        )
        for _ in range(3):
            await limiter.acquire("ada@example.com", "203.0.113.1")
        with pytest.raises(TooManyLoginAttemptsError) as refused:
            await limiter.acquire("ada@example.com", "203.0.113.1")
        assert refused.value.status_code == 429
        assert refused.value.response_headers()["Retry-After"] == "60"
        assert failing.calls == 1  # bypassed during the retry interval
        clock.now += 5
        with pytest.raises(TooManyLoginAttemptsError):
            await limiter.acquire("ada@example.com", "203.0.113.1")
        assert failing.calls == 2

    asyncio.run(check())


def test_no_store_means_no_limit() -> None:
    async def check() -> None:
        limiter = LoginLimiter(None, LIMITS)
        for _ in range(10):
            await limiter.acquire("ada@example.com", "203.0.113.1")

    asyncio.run(check())


REGISTER = RegisterLimits(window_s=3600.0, max_per_ip=2)


def test_registrations_are_limited_per_address_then_the_window_ends() -> None:
    async def check() -> None:
        clock = Clock()
        limiter = LoginLimiter(
            MemoryAttemptStore(100, clock), LIMITS, register_limits=REGISTER, clock=clock
        )
        for _ in range(2):
            await limiter.acquire_registration("203.0.113.1")
        clock.now += 600
        with pytest.raises(TooManyRegistrationsError) as refused:
            await limiter.acquire_registration("203.0.113.1")
        assert refused.value.status_code == 429
        assert refused.value.response_headers()["Retry-After"] == "3000"
        assert refused.value.detail == (
            "Too many registrations from this address; try again in 3000 seconds"
        )
        # Another address (IPv6: another /64) has its own count; logins are not affected.
        await limiter.acquire_registration("203.0.113.2")
        await limiter.acquire("ada@example.com", "203.0.113.1")
        clock.now += 3000
        await limiter.acquire_registration("203.0.113.1")

    asyncio.run(check())


def test_registration_keys_count_ipv6_per_64() -> None:
    assert registration_key("2001:db8:1:2::1") == registration_key("2001:db8:1:2::ffff")
    assert registration_key("2001:db8:1:2::1") == "register:2001:db8:1:2::/64"
    assert registration_key("::ffff:203.0.113.1") == "register:203.0.113.1"


def test_registration_limit_falls_back_to_memory_and_can_be_off() -> None:
    async def check() -> None:
        clock = Clock()
        failing = FailingStore()
        limiter = LoginLimiter(
            failing,
            LIMITS,
            register_limits=REGISTER,
            fallback=MemoryAttemptStore(100, clock),
            clock=clock,
        )
        for _ in range(2):
            await limiter.acquire_registration("203.0.113.1")
        with pytest.raises(TooManyRegistrationsError):
            await limiter.acquire_registration("203.0.113.1")
        for off in (
            LoginLimiter(None, LIMITS, register_limits=REGISTER),
            LoginLimiter(MemoryAttemptStore(100, clock), LIMITS),
        ):
            for _ in range(5):
                await off.acquire_registration("203.0.113.1")

    asyncio.run(check())
