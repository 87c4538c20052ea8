"""Secrets: password hashing (argon2), access tokens and API keys (random, stored as SHA-256).

Passwords are slow-hashed with argon2id (pwdlib's recommended parameters). Tokens and keys are
256-bit random values, so a fast hash is enough to make a stolen database useless for logging
in; only the hash is stored, and the value is shown to its owner once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pwdlib import PasswordHash

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


async def hash_password_in_thread(password: str) -> str:
    """:func:`hash_password` off the event loop (argon2 takes tens of milliseconds)."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_in_thread(password: str, hashed: str) -> PasswordCheck:
    """:func:`verify_password` off the event loop."""
    return await asyncio.to_thread(verify_password, password, hashed)
