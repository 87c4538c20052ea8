"""Brute-force limits on POST /token and POST /login (api/accounts/login_limits.py): per account,
per client IP, the known-address exemption, the window, concurrency, several workers sharing Redis
and a Redis outage. Real app, real databases, the shared Redis when TEST_REDIS_URL is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.accounts import security
from api.accounts.login_limits import MemoryAttemptStore, RegisterLimits, build_login_limiter
from api.config import Settings
from tests.integration.accounts import PASSWORD, make_account, unique_email
from tests.integration.api_client import db_app_settings, running_app
from tests.integration.redis_server import remove_prefix, shared_redis_url, unique_prefix

HOME = "198.51.100.7"  # where the user logged in before
ATTACKER = "203.0.113.66"
ELSEWHERE = "192.0.2.10"  # a new address of the user's
WRONG = "not the password"
STORES = ("memory", "redis")


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The limiter's store: per-process memory, or the shared Redis under a fresh prefix."""
    if request.param == "memory":
        yield {}
        return
    url = shared_redis_url()
    prefix = unique_prefix()
    yield {"redis_url": url, "login_redis_prefix": prefix}
    remove_prefix(url, prefix)


def sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"


@contextlib.asynccontextmanager
async def client_at(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests arrive from ``ip`` (the ASGI scope's client)."""
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tritongate") as client:
        yield client


async def token(client: httpx.AsyncClient, email: str, password: str, **kw: Any) -> httpx.Response:
    return await client.post("/token", data={"username": email, "password": password}, **kw)


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/login", data={"email": email, "password": password})


def assert_limited(reply: httpx.Response, scope: str, window_s: float) -> int:
    """A 429 with a Retry-After within the window; returns the Retry-After."""
    assert reply.status_code == 429, (reply.status_code, reply.text)
    retry_after = int(reply.headers["retry-after"])
    assert 1 <= retry_after <= math.ceil(window_s)
    assert reply.json() == {
        "detail": f"Too many failed login attempts {scope}; try again in {retry_after} seconds"
    }
    return retry_after


def test_account_lock_spares_the_users_known_address(
    database_url: str, verified_passwords: list[tuple[str, str]]
) -> None:
    """Defaults (5 per account, 20 per IP, 15 min). The attacker's sixth try is refused without
    checking the password, on /token and /login alike, even with the right password; a new
    address of the user's is locked out too, but not the address they logged in from before,
    and that login resets the account's count."""
    verified = verified_passwords

    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, _):
            account = await make_account(app)
            email = account.email
            async with (
                client_at(app, HOME) as home,
                client_at(app, ATTACKER) as attacker,
                client_at(app, ELSEWHERE) as elsewhere,
            ):
                assert (await login(home, email, PASSWORD)).status_code == 200
                statuses = []
                for attempt in range(5):
                    use = token if attempt % 2 else login  # both routes share the count
                    statuses.append((await use(attacker, email.upper(), WRONG)).status_code)
                assert statuses == [401] * 5
                verified.clear()
                sixth = await token(attacker, email, WRONG)
                retry_after = assert_limited(sixth, "for this account", 900)
                assert retry_after >= 899
                assert_limited(await login(attacker, email, PASSWORD), "for this account", 900)
                assert_limited(await token(elsewhere, email, PASSWORD), "for this account", 900)
                assert verified == [], "refused attempts never reach the password hash"

                # The known address is not locked out, and its login resets the account count.
                assert (await token(home, email, PASSWORD)).status_code == 200
                assert (await token(elsewhere, email, PASSWORD)).status_code == 200
                assert (await token(attacker, email, WRONG)).status_code == 401
                print(
                    f"\naccount lock: attempts 1-5 -> 401, 6th -> 429 Retry-After {retry_after} s;"
                    " known address -> 200"
                )

    asyncio.run(check())


def test_per_ip_limit_ignores_spoofed_forwarded_for(tmp_path: Path) -> None:
    """One address spraying 20 accounts: the 21st try is refused, whatever X-Forwarded-For
    says (the app never reads it); other addresses are unaffected."""

    async def check() -> None:
        async with running_app(db_app_settings(sqlite(tmp_path)), inference=False) as (app, _):
            account = await make_account(app)
            async with client_at(app, ATTACKER) as attacker, client_at(app, HOME) as home:
                for number in range(20):
                    headers = {"X-Forwarded-For": f"10.0.0.{number}"}
                    reply = await token(attacker, unique_email("spray"), WRONG, headers=headers)
                    assert reply.status_code == 401, number
                spoofed = {"X-Forwarded-For": "10.9.9.9", "X-Real-IP": "10.9.9.9"}
                reply = await token(attacker, account.email, PASSWORD, headers=spoofed)
                retry_after = assert_limited(reply, "from this address", 900)
                assert (await token(home, unique_email("other"), WRONG)).status_code == 401
                assert (await token(home, account.email, PASSWORD)).status_code == 200
                print(f"\nIP limit: 20 failures -> 401, 21st -> 429 Retry-After {retry_after} s")

    asyncio.run(check())


def test_successful_logins_do_not_use_up_the_ip_budget(tmp_path: Path) -> None:
    """Many users behind one NAT logging in correctly are never throttled."""

    async def check() -> None:
        settings = db_app_settings(sqlite(tmp_path), login_max_attempts_per_ip=3)
        async with running_app(settings, inference=False) as (app, client):
            accounts = [await make_account(app) for _ in range(5)]
            for account in accounts:
                assert (await token(client, account.email, PASSWORD)).status_code == 200
            for _ in range(2):
                assert (await token(client, accounts[0].email, WRONG)).status_code == 401
            assert (await token(client, accounts[1].email, PASSWORD)).status_code == 200
            assert (await token(client, accounts[2].email, WRONG)).status_code == 401
            assert_limited(
                await token(client, accounts[3].email, PASSWORD), "from this address", 900
            )

    asyncio.run(check())


WINDOW_S = 3.0  # long enough for five argon2 checks on a busy machine


def test_limits_end_with_the_window(tmp_path: Path, store_settings: dict[str, Any]) -> None:
    async def check() -> None:
        settings = db_app_settings(sqlite(tmp_path), login_window_s=WINDOW_S, **store_settings)
        async with running_app(settings, inference=False) as (app, client):
            account = await make_account(app)
            for _ in range(5):
                assert (await token(client, account.email, WRONG)).status_code == 401
            locked = await token(client, account.email, PASSWORD)
            assert_limited(locked, "for this account", WINDOW_S)
            started = time.monotonic()
            await asyncio.sleep(WINDOW_S + 0.05)  # the window began before the first failure
            reply = await token(client, account.email, PASSWORD)
            assert reply.status_code == 200, reply.text
            waited = time.monotonic() - started
            store = "redis" if store_settings else "memory"
            print(
                f"\n{store}: locked in a {WINDOW_S:.0f} s window, open again after {waited:.2f} s"
            )

    asyncio.run(check())


def test_concurrent_attempts_cannot_overshoot_the_limit(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    """Attempts are counted before the password is checked, atomically: of 20 wrong passwords
    sent at once, exactly 5 are checked."""

    async def check() -> None:
        settings = db_app_settings(sqlite(tmp_path), **store_settings)
        async with running_app(settings, inference=False) as (app, client):
            account = await make_account(app)
            replies = await asyncio.gather(
                *(token(client, account.email, WRONG) for _ in range(20))
            )
            statuses = Counter(reply.status_code for reply in replies)
            assert statuses == {401: 5, 429: 15}
            print(f"\n{'redis' if store_settings else 'memory'}: 20 concurrent -> {dict(statuses)}")

    asyncio.run(check())


def test_workers_share_the_counts_through_redis(tmp_path: Path) -> None:
    """Two apps (two workers) on one database: with Redis the limit is global; in memory each
    worker counts for itself (the README says so)."""
    url = shared_redis_url()
    prefix = unique_prefix()

    async def failures_until_limited(shared: dict[str, Any]) -> list[int]:
        settings = db_app_settings(sqlite(tmp_path), **shared)
        async with (
            running_app(settings, inference=False) as (first, one),
            running_app(settings, inference=False) as (_, two),
        ):
            account = await make_account(first)
            statuses = []
            for attempt in range(6):
                worker = one if attempt % 2 else two
                statuses.append((await token(worker, account.email, WRONG)).status_code)
            return statuses

    try:
        shared = asyncio.run(
            failures_until_limited({"redis_url": url, "login_redis_prefix": prefix})
        )
    finally:
        remove_prefix(url, prefix)
    per_process = asyncio.run(failures_until_limited({}))
    assert shared == [401] * 5 + [429]
    assert per_process == [401] * 6
    print(f"\ntwo workers, redis: {shared}; memory: {per_process}")


def test_redis_outage_falls_back_to_per_process_limits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis unreachable, logins still work and are still limited (in this process)."""

    async def check() -> None:
        settings = db_app_settings(
            sqlite(tmp_path), redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.2
        )
        async with running_app(settings, inference=False) as (app, client):
            account = await make_account(app)
            for _ in range(5):
                assert (await token(client, account.email, WRONG)).status_code == 401
            assert_limited(await token(client, account.email, PASSWORD), "for this account", 900)
            other = await make_account(app)
            assert (await token(client, other.email, PASSWORD)).status_code == 200

    with caplog.at_level(logging.WARNING, logger="api.accounts.login_limits"):
        asyncio.run(check())
    warnings = [r.getMessage() for r in caplog.records if r.name == "api.accounts.login_limits"]
    assert warnings and "counting in this process" in warnings[0]


def test_limits_can_be_turned_off(tmp_path: Path) -> None:
    async def check() -> None:
        settings = db_app_settings(sqlite(tmp_path), login_rate_limit_enabled=False)
        async with running_app(settings, inference=False) as (app, client):
            account = await make_account(app)
            for _ in range(7):
                assert (await token(client, account.email, WRONG)).status_code == 401
            assert (await token(client, account.email, PASSWORD)).status_code == 200

    asyncio.run(check())


def test_registrations_are_limited_per_address_before_any_hash(
    tmp_path: Path, store_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three registrations per address per hour here: the fourth from that address is a 429
    with Retry-After and costs no argon2 hash (a taken email counts, a 422 does not); another
    address registers as before."""
    hashed: list[str] = []
    real_hash = security.hash_password

    def spy(password: str) -> str:
        hashed.append(password)
        return real_hash(password)

    monkeypatch.setattr(security, "hash_password", spy)

    async def check() -> None:
        settings = db_app_settings(
            sqlite(tmp_path), register_max_attempts_per_ip=3, **store_settings
        )
        async with (
            running_app(settings, inference=False) as (app, _),
            client_at(app, ATTACKER) as attacker,
            client_at(app, HOME) as home,
        ):
            taken = unique_email("taken")
            statuses = []
            for email in (taken, taken, unique_email("new")):
                body = {"email": email, "password": PASSWORD}
                statuses.append((await attacker.post("/register", json=body)).status_code)
            assert statuses == [201, 400, 201]
            short = {"email": unique_email("short"), "password": "short"}
            assert (await attacker.post("/register", json=short)).status_code == 422
            assert len(hashed) == 3
            for _ in range(3):
                body = {"email": unique_email("refused"), "password": PASSWORD}
                refused = await attacker.post("/register", json=body)
                assert refused.status_code == 429, refused.text
                retry_after = int(refused.headers["retry-after"])
                assert 1 <= retry_after <= 3600
                assert refused.json() == {
                    "detail": "Too many registrations from this address; "
                    f"try again in {retry_after} seconds"
                }
            assert len(hashed) == 3  # no hash for a refused registration
            body = {"email": unique_email("home"), "password": PASSWORD}
            assert (await home.post("/register", json=body)).status_code == 201
            # Logging in from the limited address is another budget.
            assert (await token(attacker, taken, PASSWORD)).status_code == 200
            store = "redis" if store_settings else "memory"
            print(f"\n{store}: 3 registrations -> {statuses}, 4th -> 429 ({retry_after} s)")

    asyncio.run(check())


def test_the_registration_limit_defaults_to_20_per_hour() -> None:
    """Out of the box (the test settings lift it for the rest of the suite)."""
    limiter = build_login_limiter(Settings(_env_file=None))  # type: ignore[call-arg]
    assert limiter.register_limits == RegisterLimits(window_s=3600.0, max_per_ip=20)
    assert isinstance(limiter.store, MemoryAttemptStore)
