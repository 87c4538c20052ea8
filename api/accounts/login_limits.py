"""Brute-force protection for the login routes (``POST /token``, ``POST /login``), and a
per-address limit on ``POST /register``.

Every login attempt is counted, within a fixed window (``TRITONGATE_LOGIN_WINDOW_S``, 15 min),
under three counters before the password is checked:

* **per client IP** (``…_MAX_ATTEMPTS_PER_IP``, 20): one address spraying many accounts;
* **per account** (``…_MAX_ATTEMPTS_PER_ACCOUNT``, 5): many addresses guessing one account;
* **per account and IP**: the same limit, used instead of the account counter from an address
  that logged into this account successfully within ``…_KNOWN_IP_TTL_S`` (30 days).

An attempt over a limit is refused with 429 and ``Retry-After`` (the rest of that counter's
window) without verifying the password, so it costs no argon2 time and tells nothing. Counting
happens *before* verification, atomically, so concurrent requests cannot overshoot a limit. A
successful login resets the account counters (account, account-and-IP), gives back its slot of
the IP counter (so a NAT full of users logging in correctly is never throttled) and marks the IP
as known to the account. Failures for unknown emails are counted the same way (the answer must
not reveal whether an account exists); accounts are keyed by a SHA-256 of the lower-cased email.

**Lock-out trade-off.** A plain per-account lock would let anyone lock a user out for ever with
five bad passwords every 15 minutes. Here, the account lock does not apply from the user's known
addresses (where only the account-and-IP counter counts, which a stranger elsewhere cannot move):
an attacker can keep a user from logging in from a *new* address, never from one they have
used within 30 days. The cost: an attacker sharing a known address (the same NAT) gets the
per-account budget again there, and a successful login resets the account counter (an attacker
gets another five guesses per window each time the user logs in).

**Registration.** Every ``POST /register`` that passes validation counts, per client address
(IPv6 per /64), within ``TRITONGATE_REGISTER_WINDOW_S`` (1 h): over
``…_REGISTER_MAX_ATTEMPTS_PER_IP`` (20) it is refused with 429 and ``Retry-After`` before the
password is hashed, so one address cannot spend the server's argon2 time (the hashing pool of
api/accounts/security.py bounds what many addresses together can). Same stores, same switch
(``…_LOGIN_RATE_LIMIT_ENABLED``), keys ``register:<address>``.

**Client IP.** The ASGI scope's client address. The app never reads ``X-Forwarded-For`` itself:
uvicorn and gunicorn replace the scope's client with the header's value only for peers listed in
``--forwarded-allow-ips`` / ``FORWARDED_ALLOW_IPS`` (default: 127.0.0.1), so behind a proxy, set
that to the proxy's address and nothing else. IPv6 addresses are counted per /64 (one host
usually owns a whole /64); IPv4-mapped IPv6 addresses as IPv4.

**Storage.** With ``TRITONGATE_REDIS_URL``, Redis (one Lua script per check, atomic, shared by
every worker and host); each key expires with its window (known addresses after their TTL). While
Redis is unreachable the limiter falls back to this process's memory store (and logs it), so
logins keep working and stay throttled per process. Without Redis, the memory store, per
process: with N workers an attacker gets up to N times the budget (use Redis with workers). The
memory store holds at most ``…_MAX_TRACKED_KEYS`` counters (and as many known addresses): expired
ones are dropped first, then the oldest.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection

from api.config import Settings
from api.errors import TooManyLoginAttemptsError, TooManyRegistrationsError

logger = logging.getLogger(__name__)

LimitScope = Literal["ip", "account"]
UNKNOWN_CLIENT = "unknown"
_T = TypeVar("_T")
_V = TypeVar("_V")


@dataclass(frozen=True)
class LoginLimits:
    window_s: float
    max_per_account: int
    max_per_ip: int
    known_ip_ttl_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        return cls(
            window_s=settings.login_window_s,
            max_per_account=settings.login_max_attempts_per_account,
            max_per_ip=settings.login_max_attempts_per_ip,
            known_ip_ttl_s=settings.login_known_ip_ttl_s,
        )


@dataclass(frozen=True)
class RegisterLimits:
    window_s: float
    max_per_ip: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RegisterLimits:
        return cls(
            window_s=settings.register_window_s, max_per_ip=settings.register_max_attempts_per_ip
        )


def client_ip(connection: HTTPConnection) -> str:
    """The caller's address from the ASGI scope (see the module's note on proxies)."""
    client = connection.client
    return client.host if client is not None and client.host else UNKNOWN_CLIENT


def ip_bucket(host: str) -> str:
    """The address an attempt is counted under: IPv4 as is, IPv6 per /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64] or UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address.packed, 64), strict=False))
    return str(address)


def account_id(email: str) -> str:
    """A fixed-size, non-reversible key for an email (no addresses stored in Redis)."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class AttemptKeys:
    ip: str
    account: str
    pair: str  # account and IP
    known: str  # marker: this IP logged into this account

    @classmethod
    def for_login(cls, email: str, host: str) -> AttemptKeys:
        account = account_id(email)
        address = ip_bucket(host)
        return cls(
            ip=f"ip:{address}",
            account=f"account:{account}",
            pair=f"pair:{account}:{address}",
            known=f"known:{account}:{address}",
        )


def registration_key(host: str) -> str:
    return f"register:{ip_bucket(host)}"


@dataclass(frozen=True)
class Blocked:
    scope: LimitScope
    retry_after_s: float


class AttemptStoreUnavailableError(Exception):
    """The shared store (Redis) could not be reached or did not answer in time."""


class AttemptStore(Protocol):
    name: str

    async def acquire(self, keys: AttemptKeys, limits: LoginLimits) -> Blocked | None:
        """Count an attempt, or say which limit refuses it (and then count nothing)."""

    async def succeeded(self, keys: AttemptKeys, limits: LoginLimits) -> None:
        """Reset the account counters, give back the IP slot, mark the IP as known."""

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one event under ``key`` (a window of ``window_s`` from its first), or, at
        ``limit`` already, count nothing and return the seconds left in the window."""

    async def close(self) -> None: ...


class MemoryAttemptStore:
    """Per-process counters: fixed windows, at most ``max_keys`` counters and as many known
    addresses. Every operation runs on the event loop without awaiting, hence atomically."""

    name = "memory"

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._clock = clock
        # key: (count, window end). The login windows have one length, so insertion order is
        # (nearly: registration windows differ) expiry order and the front holds the oldest.
        self._counters: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._known: OrderedDict[str, float] = OrderedDict()  # key: expiry

    @property
    def tracked(self) -> int:
        return len(self._counters) + len(self._known)

    def _count(self, key: str, now: float) -> tuple[int, float]:
        entry = self._counters.get(key)
        if entry is None:
            return 0, now
        if entry[1] <= now:
            del self._counters[key]
            return 0, now
        return entry

    def _over(self, key: str, limit: int, now: float) -> float | None:
        count, ends = self._count(key, now)
        return ends - now if count >= limit else None

    def _is_known(self, key: str, now: float) -> bool:
        expires = self._known.get(key)
        if expires is None:
            return False
        if expires <= now:
            del self._known[key]
            return False
        return True

    def _make_room(
        self, entries: OrderedDict[str, _V], expiry: Callable[[_V], float], now: float
    ) -> None:
        """Before an insertion: drop expired entries from the front, then the oldest while
        full."""
        while entries:
            if expiry(next(iter(entries.values()))) > now and len(entries) < self.max_keys:
                return
            entries.popitem(last=False)

    def _increment(self, key: str, window: float, now: float) -> None:
        count, ends = self._count(key, now)
        if count:
            self._counters[key] = (count + 1, ends)
            return
        self._make_room(self._counters, lambda entry: entry[1], now)
        self._counters[key] = (1, now + window)

    async def acquire(self, keys: AttemptKeys, limits: LoginLimits) -> Blocked | None:
        now = self._clock()
        wait = self._over(keys.ip, limits.max_per_ip, now)
        if wait is not None:
            return Blocked("ip", wait)
        account_key = keys.pair if self._is_known(keys.known, now) else keys.account
        wait = self._over(account_key, limits.max_per_account, now)
        if wait is not None:
            return Blocked("account", wait)
        for key in (keys.ip, keys.account, keys.pair):
            self._increment(key, limits.window_s, now)
        return None

    async def succeeded(self, keys: AttemptKeys, limits: LoginLimits) -> None:
        now = self._clock()
        self._counters.pop(keys.account, None)
        self._counters.pop(keys.pair, None)
        count, ends = self._count(keys.ip, now)
        if count > 1:
            self._counters[keys.ip] = (count - 1, ends)
        elif count == 1:
            del self._counters[keys.ip]
        self._known.pop(keys.known, None)
        self._make_room(self._known, lambda expires: expires, now)
        self._known[keys.known] = now + limits.known_ip_ttl_s

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        now = self._clock()
        wait = self._over(key, limit, now)
        if wait is not None:
            return wait
        self._increment(key, window_s, now)
        return None

    async def close(self) -> None:
        self._counters.clear()
        self._known.clear()


# KEYS: ip, account, pair, known. ARGV: window (ms), max per IP, max per account.
# Returns {0, 0} when the attempt was counted, else {1 (ip) or 2 (account), ms left}.
_ACQUIRE = """
local window = tonumber(ARGV[1])
local function over(key, limit)
  local count = tonumber(redis.call('GET', key) or '0')
  if count < limit then
    return nil
  end
  local left = redis.call('PTTL', key)
  if left < 0 then
    redis.call('PEXPIRE', key, window)
    left = window
  end
  return left
end
local left = over(KEYS[1], tonumber(ARGV[2]))
if left then
  return {1, left}
end
local account = KEYS[2]
if redis.call('EXISTS', KEYS[4]) == 1 then
  account = KEYS[3]
end
left = over(account, tonumber(ARGV[3]))
if left then
  return {2, left}
end
for i = 1, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], window)
  end
end
return {0, 0}
"""

# KEYS: ip, account, pair, known. ARGV: known TTL (ms).
_SUCCEEDED = """
redis.call('DEL', KEYS[2], KEYS[3])
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[1])
return 0
"""

# KEYS: counter. ARGV: window (ms), limit. Returns 0 when counted, else the ms left.
_HIT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[2]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    left = tonumber(ARGV[1])
  end
  return math.max(left, 1)
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 0
"""

_SCOPES: dict[int, LimitScope] = {1: "ip", 2: "account"}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisAttemptStore:
    """Counters shared by every worker: one atomic Lua script per call, keys under ``prefix``
    expiring with their window."""

    name = "redis"

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._succeeded = client.register_script(_SUCCEEDED)
        self._hit = client.register_script(_HIT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, timeout: float) -> RedisAttemptStore:
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix)

    def _keys(self, keys: AttemptKeys) -> list[str]:
        return [self.prefix + key for key in (keys.ip, keys.account, keys.pair, keys.known)]

    async def _call(self, command: Awaitable[_T]) -> _T:
        try:
            return await command
        except (RedisError, OSError, TimeoutError) as error:
            raise AttemptStoreUnavailableError(f"redis: {error}") from error

    async def acquire(self, keys: AttemptKeys, limits: LoginLimits) -> Blocked | None:
        args = [_ms(limits.window_s), limits.max_per_ip, limits.max_per_account]
        code, left_ms = await self._call(self._acquire(keys=self._keys(keys), args=args))
        if int(code) == 0:
            return None
        return Blocked(_SCOPES[int(code)], int(left_ms) / 1000.0)

    async def succeeded(self, keys: AttemptKeys, limits: LoginLimits) -> None:
        args = [_ms(limits.known_ip_ttl_s)]
        await self._call(self._succeeded(keys=self._keys(keys), args=args))

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        args = [_ms(window_s), limit]
        left_ms = await self._call(self._hit(keys=[self.prefix + key], args=args))
        return None if int(left_ms) == 0 else int(left_ms) / 1000.0

    async def close(self) -> None:
        await self.client.aclose()


_MESSAGES: dict[LimitScope, str] = {
    "ip": "Too many failed login attempts from this address; try again in {} seconds",
    "account": "Too many failed login attempts for this account; try again in {} seconds",
}


class LoginLimiter:
    """What the login routes call: :meth:`acquire` before checking a password (raises
    :class:`TooManyLoginAttemptsError`), :meth:`succeeded` after a good one;
    ``POST /register`` calls :meth:`acquire_registration` (with ``register_limits``) before
    hashing. ``store=None`` turns throttling off. With a ``fallback``, a failing store is
    bypassed for ``retry_interval`` seconds (warned about at most once per
    ``warning_interval``)."""

    def __init__(
        self,
        store: AttemptStore | None,
        limits: LoginLimits,
        *,
        register_limits: RegisterLimits | None = None,
        fallback: MemoryAttemptStore | None = None,
        retry_interval: float = 1.0,
        warning_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.limits = limits
        self.register_limits = register_limits
        self.fallback = fallback
        self.retry_interval = retry_interval
        self.warning_interval = warning_interval
        self._clock = clock
        self._retry_at = 0.0
        self._next_warning = 0.0

    async def acquire(self, email: str, host: str) -> None:
        if self.store is None:
            return
        keys = AttemptKeys.for_login(email, host)
        blocked = await self._run(lambda store: store.acquire(keys, self.limits))
        if blocked is not None:
            seconds = max(1, math.ceil(blocked.retry_after_s))
            raise TooManyLoginAttemptsError(
                _MESSAGES[blocked.scope].format(seconds), blocked.retry_after_s
            )

    async def succeeded(self, email: str, host: str) -> None:
        if self.store is None:
            return
        keys = AttemptKeys.for_login(email, host)
        await self._run(lambda store: store.succeeded(keys, self.limits))

    async def acquire_registration(self, host: str) -> None:
        """Count a registration from ``host``, or raise :class:`TooManyRegistrationsError`."""
        limits = self.register_limits
        if self.store is None or limits is None:
            return
        key = registration_key(host)
        wait = await self._run(lambda store: store.hit(key, limits.max_per_ip, limits.window_s))
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise TooManyRegistrationsError(
                f"Too many registrations from this address; try again in {seconds} seconds", wait
            )

    async def _run(self, call: Callable[[AttemptStore], Awaitable[_T]]) -> _T:
        assert self.store is not None
        if self.fallback is None:
            return await call(self.store)
        if self._clock() < self._retry_at:
            return await call(self.fallback)
        try:
            return await call(self.store)
        except AttemptStoreUnavailableError as error:
            now = self._clock()
            self._retry_at = now + self.retry_interval
            if now >= self._next_warning:
                self._next_warning = now + self.warning_interval
                logger.warning(
                    "login limits: %s store unavailable (%s); counting in this process",
                    self.store.name,
                    error,
                )
            return await call(self.fallback)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
        if self.fallback is not None:
            await self.fallback.close()


def build_login_limiter(settings: Settings) -> LoginLimiter:
    """The configured limiter (logins and registrations): Redis (with a memory fallback) when
    REDIS_URL is set, else memory; a no-op when ``login_rate_limit_enabled`` is false. Nothing
    connects here."""
    limits = LoginLimits.from_settings(settings)
    register_limits = RegisterLimits.from_settings(settings)
    if not settings.login_rate_limit_enabled:
        logger.info("login limits: disabled")
        return LoginLimiter(None, limits)
    memory = MemoryAttemptStore(settings.login_max_tracked_keys)
    url = settings.redis_url_value
    if url is None:
        logger.info("login limits: in-process (per worker)")
        return LoginLimiter(memory, limits, register_limits=register_limits)
    parts = urlsplit(url)
    logger.info("login limits: redis at %s:%s", parts.hostname, parts.port or 6379)
    store = RedisAttemptStore.from_url(
        url, prefix=settings.login_redis_prefix, timeout=settings.redis_timeout_s
    )
    return LoginLimiter(
        store,
        limits,
        register_limits=register_limits,
        fallback=memory,
        retry_interval=settings.cache_retry_interval_s,
        warning_interval=settings.cache_warning_interval_s,
    )
