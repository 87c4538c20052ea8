"""Password hashing, token and key generation and their stored form."""

from __future__ import annotations

import asyncio

from api import security


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
