"""Secrets are compared in constant time, and tokens and API keys are looked up by hash.

Every comparison of a secret with a value the client sent (the CSRF double-submit and its
signature, the metrics token on the API port and on the metrics port) must go through
``hmac.compare_digest`` (``api.accounts.security.constant_time_equal`` wraps it): a spy replaces it
and the tests check that it saw the values. No timing is measured. Access tokens and API keys are
never compared in Python: the database is asked for the row whose SHA-256 matches, so the value
itself never reaches a comparison (nor the database).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.dialects import sqlite
from starlette.requests import Request

from api.accounts import security
from api.accounts.crud import api_keys as api_keys_crud
from api.accounts.crud import tokens as tokens_crud
from api.accounts.csrf import CSRF_COOKIE, CSRF_HEADER, check_csrf, new_csrf_token
from api.config import Settings
from api.errors import CsrfError, NotAuthenticatedError
from api.platform.metrics_route import check_metrics_token
from api.platform.metrics_server import _with_token

SECRET_KEY = "k" * 40
METRICS_TOKEN = "metrics-secret-token"


@pytest.fixture()
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every pair of values given to ``hmac.compare_digest`` during the test."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(left: Any, right: Any) -> bool:
        calls.append((left, right))
        return real(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def _request(method: str, headers: dict[str, str]) -> Request:
    raw = [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    return Request({"type": "http", "method": method, "headers": raw, "path": "/"})


def test_csrf_header_and_signature_are_compared_in_constant_time(
    compared: list[tuple[bytes, bytes]],
) -> None:
    session = "5" * 64
    token = new_csrf_token(SECRET_KEY, session)
    nonce, _, signature = token.partition(".")
    good = {"cookie": f"{CSRF_COOKIE}={token}", CSRF_HEADER: token}
    check_csrf(_request("POST", good), SECRET_KEY, bound_to=session)
    assert (token.encode(), token.encode()) in compared
    expected = security.sign(f"csrf|{session}|{nonce}", SECRET_KEY)
    assert (signature.encode(), expected.encode()) in compared

    compared.clear()
    with pytest.raises(CsrfError):
        bad = _request("POST", {**good, CSRF_HEADER: token + "x"})
        check_csrf(bad, SECRET_KEY, bound_to=session)
    assert compared == [(token.encode(), (token + "x").encode())]


def test_the_metrics_token_is_compared_in_constant_time(
    compared: list[tuple[bytes, bytes]],
) -> None:
    settings = Settings(_env_file=None, metrics_token=METRICS_TOKEN)  # type: ignore[call-arg]
    scrape = _request("GET", {})
    with pytest.raises(NotAuthenticatedError):
        asyncio.run(check_metrics_token(scrape, settings, "Bearer a-guess"))
    assert compared == [(b"a-guess", METRICS_TOKEN.encode())]
    compared.clear()
    asyncio.run(check_metrics_token(scrape, settings, f"Bearer {METRICS_TOKEN}"))
    assert compared == [(METRICS_TOKEN.encode(), METRICS_TOKEN.encode())]


def test_the_metrics_port_token_is_compared_in_constant_time(
    compared: list[tuple[bytes, bytes]],
) -> None:
    statuses: list[str] = []

    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return [b"metrics"]

    guarded = _with_token(inner, METRICS_TOKEN)

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        statuses.append(status)

    guarded({"HTTP_AUTHORIZATION": "Bearer a-guess"}, start_response)
    guarded({"HTTP_AUTHORIZATION": f"Bearer {METRICS_TOKEN}"}, start_response)
    assert statuses == ["401 Unauthorized", "200 OK"]
    assert compared == [
        (b"a-guess", METRICS_TOKEN.encode()),
        (METRICS_TOKEN.encode(), METRICS_TOKEN.encode()),
    ]


class _RecordingSession:
    """Stands in for an AsyncSession: keeps the statement, finds nothing."""

    def __init__(self) -> None:
        self.statements: list[Any] = []

    async def execute(self, statement: Any) -> Any:
        self.statements.append(statement)
        return self

    def scalar_one_or_none(self) -> None:
        return None

    def unique(self) -> _RecordingSession:
        return self


@pytest.mark.parametrize(
    "lookup",
    [tokens_crud.get_valid_token, api_keys_crud.get_api_key],
    ids=["access-token", "api-key"],
)
def test_tokens_and_keys_are_looked_up_by_their_hash(
    lookup: Callable[..., Any], compared: list[tuple[bytes, bytes]]
) -> None:
    value = "tg_" + "v" * 43
    session = _RecordingSession()
    assert asyncio.run(lookup(session, value)) is None
    (statement,) = session.statements
    sql = str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    assert security.hash_secret(value) in sql
    assert value not in sql
    assert compared == []  # nothing compared in Python: the database matches the hash
