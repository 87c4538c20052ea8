"""Password hashing, token and key generation and their stored form."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from api.accounts import security
from api.config import Settings
from api.errors import PasswordHashingBusyError, install_error_handlers


def test_password_hash_round_trip() -> None:
    hashed = security.hash_password("correct horse")
    assert hashed.startswith("$argon2id$") and "correct horse" not in hashed
    assert security.verify_password("correct horse", hashed) == security.PasswordCheck(True)
    assert not security.verify_password("wrong horse", hashed).valid
    assert security.hash_password("correct horse") != hashed  # salted


def test_outdated_hash_is_upgraded_on_a_valid_login() -> None:
    from pwdlib.hashers.argon2 import Argon2Hasher

    weak = Argon2Hasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("pw")
    check = security.verify_password("pw", weak)
    assert check.valid and check.updated_hash is not None
    assert security.verify_password("pw", check.updated_hash) == security.PasswordCheck(True)
    assert security.verify_password("nope", weak).updated_hash is None


def test_thread_wrappers_give_the_same_answers() -> None:
    hashed = asyncio.run(security.hash_password_in_thread("pw in thread"))
    assert asyncio.run(security.verify_password_in_thread("pw in thread", hashed)).valid


def test_the_installed_pool_serves_the_thread_wrappers(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real_hash = security.hash_password

    def spy(password: str) -> str:
        threads.append(threading.current_thread().name)
        return real_hash(password)

    monkeypatch.setattr(security, "hash_password", spy)

    async def check() -> None:
        pool = security.PasswordHashingPool(security.HashingLimits(2, 1, 1))
        with security.installed_hashing_pool(pool):
            assert security.current_hashing_pool() is pool
            hashed = await security.hash_password_in_thread("pooled")
            assert (await security.verify_password_in_thread("pooled", hashed)).valid
        pool.close()
        assert security.current_hashing_pool() is None

    asyncio.run(check())
    assert threads and threads[0].startswith("argon2")


def test_dummy_hash_is_a_real_hash_made_once() -> None:
    dummy = security.dummy_password_hash()
    assert dummy is security.dummy_password_hash()
    assert dummy.startswith("$argon2id$")
    assert not security.verify_password("", dummy).valid


def test_tokens_and_keys_are_random_and_stored_as_sha256() -> None:
    tokens = {security.new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) >= 43 for t in tokens)  # 32 random bytes, URL-safe base64
    key = security.new_api_key()
    assert key.startswith(security.API_KEY_PREFIX)
    assert security.api_key_display_prefix(key) == key[: security.API_KEY_DISPLAY_CHARS]
    stored = security.hash_secret(key)
    assert len(stored) == 64 and stored != key and stored == security.hash_secret(key)
    assert security.hash_secret(key + "x") != stored


def test_constant_time_equal_and_sign() -> None:
    assert security.constant_time_equal("abc", "abc")
    assert not security.constant_time_equal("abc", "abd")
    assert not security.constant_time_equal("abc", "abcd")
    assert security.sign("v", "k1") == security.sign("v", "k1") != security.sign("v", "k2")


class Gate:
    """Stands in for argon2: each call blocks its thread until the test opens the gate."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = threading.Semaphore(0)

    def hash(self, password: str) -> str:
        self.started.release()
        assert self.opened.wait(10)
        return "hashed:" + password

    def verify(self, password: str, hashed: str) -> security.PasswordCheck:
        self.started.release()
        assert self.opened.wait(10)
        return security.PasswordCheck(hashed == "hashed:" + password)

    async def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(self.started.acquire, True, 10)


@pytest.fixture()
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    gate = Gate()
    monkeypatch.setattr(security, "hash_password", gate.hash)
    monkeypatch.setattr(security, "verify_password", gate.verify)
    yield gate
    gate.opened.set()


def test_a_full_hashing_queue_is_refused_with_503_at_once(gate: Gate) -> None:
    """Two threads: new hashes may use one of them, one more waits; the third is refused
    without waiting, while verifications still get the other thread."""

    async def check() -> None:
        pool = security.PasswordHashingPool(security.HashingLimits(2, 1, 0))
        running = asyncio.create_task(pool.hash("a"))
        await gate.wait_started(1)
        waiting = asyncio.create_task(pool.hash("b"))
        await asyncio.sleep(0.05)
        assert pool.hashes.admitted == 2
        with pytest.raises(PasswordHashingBusyError) as refused:
            await pool.hash("c")
        assert refused.value.status_code == 503
        # A login is not queued behind the hashes: it takes the thread they may not use.
        login = asyncio.create_task(pool.verify("a", "hashed:a"))
        await gate.wait_started(1)
        # Verifications have their own bound (here two running, none waiting).
        second_login = asyncio.create_task(pool.verify("b", "hashed:b"))
        await asyncio.sleep(0.05)
        with pytest.raises(PasswordHashingBusyError):
            await pool.verify("c", "hashed:c")
        gate.opened.set()
        assert await running == "hashed:a" and await waiting == "hashed:b"
        assert (await login).valid and (await second_login).valid
        assert pool.hashes.admitted == 0 and pool.verifications.admitted == 0
        assert await pool.hash("d") == "hashed:d"
        pool.close()

    asyncio.run(check())


def test_a_cancelled_caller_keeps_its_slot_until_its_thread_is_done(gate: Gate) -> None:
    async def check() -> None:
        pool = security.PasswordHashingPool(security.HashingLimits(1, 0, 0))
        call = asyncio.create_task(pool.hash("a"))
        await gate.wait_started(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # The thread is still hashing: no second hash may start beside it.
        with pytest.raises(PasswordHashingBusyError):
            await pool.hash("b")
        gate.opened.set()
        for _ in range(100):
            if pool.hashes.admitted == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.hashes.admitted == 0
        assert await pool.hash("b") == "hashed:b"
        pool.close()

    asyncio.run(check())


def test_the_busy_error_is_a_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app, retry_after_s=2)

    @app.get("/hash")
    async def busy() -> None:
        raise PasswordHashingBusyError("Too many password hashes in progress; try again shortly")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/hash")

    reply = asyncio.run(call())
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "2"
    assert reply.json() == {"detail": "Too many password hashes in progress; try again shortly"}


def test_pool_limits_come_from_the_settings() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    limits = security.HashingLimits.from_settings(settings)
    assert limits.threads == min(os.cpu_count() or 1, security.MAX_DEFAULT_HASH_THREADS)
    assert (limits.max_waiting_hashes, limits.max_waiting_verifications) == (8, 64)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        password_hash_threads=3,
        password_hash_max_waiting=0,
        password_verify_max_waiting=5,
    )
    assert security.HashingLimits.from_settings(settings) == security.HashingLimits(3, 0, 5)
