"""Secrets: password hashing (argon2), access tokens and API keys (random, stored as SHA-256).

Passwords are slow-hashed with argon2id (pwdlib's recommended parameters: ~64 MiB and tens of
milliseconds of one core each). Tokens and keys are 256-bit random values, so a fast hash is
enough to make a stolen database useless for logging in; only the hash is stored, and the value
is shown to its owner once.

**Hashing pool.** :class:`PasswordHashingPool` runs argon2 on a few threads of its own, in two
lanes: *new hashes* (registrations, password changes) may occupy every thread but one (with a
single thread, that one), and *verifications* (logins, current-password checks) every thread, so
a flood of sign-ups cannot make logins wait behind more than one hash: queued hashes wait for
their lane's turn, not in the executor's queue. Each lane admits a bounded number of calls
(running + waiting); beyond that :class:`~api.errors.PasswordHashingBusyError` (503). The app's
lifespan builds the pool from the settings and installs it (:func:`installed_hashing_pool`);
:func:`hash_password_in_thread` and :func:`verify_password_in_thread` use the installed pool
(outside an app, e.g. in scripts, asyncio's default executor).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from pwdlib import PasswordHash

from api.config import Settings
from api.errors import PasswordHashingBusyError

TOKEN_BYTES = 32
API_KEY_PREFIX = "tg_"
API_KEY_DISPLAY_CHARS = 10  # "tg_" plus the first characters: enough to tell keys apart


@functools.cache
def _password_hash() -> PasswordHash:
    return PasswordHash.recommended()


@dataclass(frozen=True)
class PasswordCheck:
    valid: bool
    # A new hash when the stored one uses outdated parameters (store it after a login).
    updated_hash: str | None = None


def hash_password(password: str) -> str:
    return _password_hash().hash(password)


def verify_password(password: str, hashed: str) -> PasswordCheck:
    valid, updated = _password_hash().verify_and_update(password, hashed)
    return PasswordCheck(valid=valid, updated_hash=updated if valid else None)


@functools.cache
def dummy_password_hash() -> str:
    """A hash to verify against when no user matches, so both failures cost the same."""
    return hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def api_key_display_prefix(key: str) -> str:
    return key[:API_KEY_DISPLAY_CHARS]


def hash_secret(value: str) -> str:
    """The stored form of a token or API key (hex SHA-256)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def constant_time_equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def sign(value: str, key: str) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, as hex."""
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


MAX_DEFAULT_HASH_THREADS = 4
_T = TypeVar("_T")


@dataclass(frozen=True)
class HashingLimits:
    threads: int
    max_waiting_hashes: int
    max_waiting_verifications: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HashingLimits:
        threads = settings.password_hash_threads
        if threads is None:
            threads = min(os.cpu_count() or 1, MAX_DEFAULT_HASH_THREADS)
        return cls(
            threads=threads,
            max_waiting_hashes=settings.password_hash_max_waiting,
            max_waiting_verifications=settings.password_verify_max_waiting,
        )


class _Lane:
    """At most ``running`` calls on the executor at once and ``waiting`` more queued for a
    turn; a call over that is refused at once. A call keeps its slot until its thread is done,
    even when the caller gave up (a cancelled request cannot free a busy thread)."""

    def __init__(self, name: str, executor: ThreadPoolExecutor, running: int, waiting: int) -> None:
        self.name = name
        self._executor = executor
        self._capacity = running + waiting
        self._turns = asyncio.Semaphore(running)
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Calls running or waiting."""
        return self._admitted

    async def run(self, function: Callable[..., _T], *args: object) -> _T:
        if self._admitted >= self._capacity:
            raise PasswordHashingBusyError(
                f"Too many password {self.name} in progress; try again shortly"
            )
        self._admitted += 1
        try:
            await self._turns.acquire()
        except BaseException:
            self._admitted -= 1
            raise
        loop = asyncio.get_running_loop()
        try:
            work: Future[_T] = self._executor.submit(function, *args)
        except BaseException:
            self._release()
            raise

        def done(_: Future[_T]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._release)

        work.add_done_callback(done)
        return await asyncio.wrap_future(work)

    def _release(self) -> None:
        self._admitted -= 1
        self._turns.release()


class PasswordHashingPool:
    """argon2 on ``limits.threads`` threads of its own, in two lanes (see the module's note).
    Build it inside the event loop that uses it; :meth:`close` when done."""

    def __init__(self, limits: HashingLimits) -> None:
        self.limits = limits
        self._executor = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="argon2")
        self.hashes = _Lane(
            "hashes", self._executor, max(1, limits.threads - 1), limits.max_waiting_hashes
        )
        self.verifications = _Lane(
            "verifications", self._executor, limits.threads, limits.max_waiting_verifications
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHashingPool:
        return cls(HashingLimits.from_settings(settings))

    async def hash(self, password: str) -> str:
        # The module's names are looked up at call time (tests spy on them).
        return await self.hashes.run(hash_password, password)

    async def verify(self, password: str, hashed: str) -> PasswordCheck:
        return await self.verifications.run(verify_password, password, hashed)

    def close(self) -> None:
        """Drop queued work; running hashes finish on their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)


_installed: list[PasswordHashingPool] = []


@contextlib.contextmanager
def installed_hashing_pool(pool: PasswordHashingPool) -> Iterator[PasswordHashingPool]:
    """Make ``pool`` the one :func:`hash_password_in_thread` and
    :func:`verify_password_in_thread` use, until the block ends (the app's lifespan)."""
    _installed.append(pool)
    try:
        yield pool
    finally:
        _installed.remove(pool)


def current_hashing_pool() -> PasswordHashingPool | None:
    return _installed[-1] if _installed else None


async def hash_password_in_thread(password: str) -> str:
    """:func:`hash_password` off the event loop, on the installed pool's hashing lane
    (:class:`~api.errors.PasswordHashingBusyError` when it is full)."""
    pool = current_hashing_pool()
    if pool is None:
        return await asyncio.to_thread(hash_password, password)
    return await pool.hash(password)


async def verify_password_in_thread(password: str, hashed: str) -> PasswordCheck:
    """:func:`verify_password` off the event loop, on the installed pool's verification lane
    (:class:`~api.errors.PasswordHashingBusyError` when it is full)."""
    pool = current_hashing_pool()
    if pool is None:
        return await asyncio.to_thread(verify_password, password, hashed)
    return await pool.verify(password, hashed)
