"""The signed double-submit CSRF token."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from api.csrf import CSRF_COOKIE, CSRF_HEADER, check_csrf, is_valid_csrf_token, new_csrf_token
from api.errors import CsrfError

SECRET = "a" * 40


def _request(method: str, cookie: str | None, header: str | None) -> Request:
    headers = []
    if cookie is not None:
        headers.append((b"cookie", f"{CSRF_COOKIE}={cookie}".encode()))
    if header is not None:
        headers.append((CSRF_HEADER.encode(), header.encode()))
    return Request({"type": "http", "method": method, "headers": headers, "path": "/"})


def test_tokens_are_signed_with_the_secret() -> None:
    token = new_csrf_token(SECRET)
    assert is_valid_csrf_token(token, SECRET)
    assert not is_valid_csrf_token(token, "b" * 40)
    nonce, _, signature = token.partition(".")
    assert not is_valid_csrf_token(nonce + "x." + signature, SECRET)
    assert not is_valid_csrf_token(nonce, SECRET)
    assert new_csrf_token(SECRET) != token


def test_check_accepts_a_matching_header_and_safe_methods() -> None:
    token = new_csrf_token(SECRET)
    check_csrf(_request("POST", token, token), SECRET)
    check_csrf(_request("GET", None, None), SECRET)


@pytest.mark.parametrize(
    ("cookie", "header"),
    [(None, "t"), ("t", None), ("t", "u"), ("forged.value", "forged.value")],
    ids=["no-cookie", "no-header", "mismatch", "unsigned"],
)
def test_check_refuses_writes_without_a_valid_pair(cookie: str | None, header: str | None) -> None:
    valid = new_csrf_token(SECRET)
    cookie = valid if cookie == "t" else cookie
    header = valid if header == "t" else header
    with pytest.raises(CsrfError):
        check_csrf(_request("DELETE", cookie, header), SECRET)
