"""The login and CSRF cookie names by scheme, and reading the login cookie on HTTP and
WebSocket connections (api/accounts/cookies.py, api/accounts/auth.py's read_session_cookie)."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection

from api.accounts.auth import (
    HOST_TOKEN_COOKIE,
    TOKEN_COOKIE,
    read_session_cookie,
    session_cookie_name,
)
from api.accounts.cookies import cookie_name, is_secure


def _connection(kind: str, scheme: str, cookie: str | None) -> HTTPConnection:
    headers = [(b"host", b"gate.example")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return HTTPConnection({"type": kind, "scheme": scheme, "path": "/", "headers": headers})


def test_names_carry_the_host_prefix_only_when_secure() -> None:
    assert cookie_name("token", secure=True) == "__Host-token" == HOST_TOKEN_COOKIE
    assert cookie_name("token", secure=False) == "token" == TOKEN_COOKIE


@pytest.mark.parametrize(
    ("kind", "scheme", "secure"),
    [
        ("http", "http", False),
        ("http", "https", True),
        ("websocket", "ws", False),
        ("websocket", "wss", True),
    ],
)
def test_the_session_cookie_is_read_under_the_name_of_the_scheme(
    kind: str, scheme: str, secure: bool
) -> None:
    both = "token=plain-value; __Host-token=host-value"
    connection = _connection(kind, scheme, both)
    assert is_secure(connection) is secure
    assert session_cookie_name(connection) == (HOST_TOKEN_COOKIE if secure else TOKEN_COOKIE)
    assert read_session_cookie(connection) == ("host-value" if secure else "plain-value")
    other = "token=plain-value" if secure else "__Host-token=host-value"
    assert read_session_cookie(_connection(kind, scheme, other)) is None
    assert read_session_cookie(_connection(kind, scheme, None)) is None
    empty = f"{session_cookie_name(connection)}="
    assert read_session_cookie(_connection(kind, scheme, empty)) is None
