"""CSRF protection for the login cookie: the double-submit pattern, as in the book.

``GET /csrf`` (and ``POST /login``) set a ``csrftoken`` cookie that scripts on the page can read.
A write authenticated by the login cookie must echo that value in the ``x-csrf-token`` header; a
cross-site form or script cannot, because it can neither read the cookie nor set the header.
The value is a random nonce with its HMAC under ``TRITONGATE_SECRET_KEY``, so a value made up
elsewhere is refused even if it is planted in both places. Requests authenticated by a bearer
token or an API key carry no ambient credentials and are not checked.
"""

from __future__ import annotations

import secrets

from fastapi import Request, Response

from api import security
from api.errors import CsrfError

CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_COOKIE_MAX_AGE_S = 7 * 24 * 3600


def new_csrf_token(secret_key: str) -> str:
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{security.sign(nonce, secret_key)}"


def is_valid_csrf_token(token: str, secret_key: str) -> bool:
    nonce, _, signature = token.partition(".")
    return bool(nonce and signature) and security.constant_time_equal(
        signature, security.sign(nonce, secret_key)
    )


def set_csrf_cookie(response: Response, token: str, *, secure: bool) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        token,
        max_age=CSRF_COOKIE_MAX_AGE_S,
        secure=secure,
        httponly=False,  # the page's script reads it to fill the header
        samesite="lax",
    )


def check_csrf(request: Request, secret_key: str) -> None:
    """Refuse an unsafe request whose header does not match a valid CSRF cookie (403)."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(CSRF_COOKIE)
    header = request.headers.get(CSRF_HEADER)
    if not cookie or not header:
        raise CsrfError()
    if not security.constant_time_equal(cookie, header):
        raise CsrfError()
    if not is_valid_csrf_token(cookie, secret_key):
        raise CsrfError()
