"""CSRF protection for the login cookie: a double-submit token bound to the session, and
same-site checks on the login and on cookie writes.

``GET /csrf`` and ``POST /login`` set a CSRF cookie (``csrftoken``; ``__Host-csrftoken`` over
HTTPS, see api/accounts/cookies.py) that scripts on the page can read, with the same value in the
body. A write authenticated by the login cookie must echo that value in the ``x-csrf-token`` header.
The value is a random nonce and an HMAC, under ``TRITONGATE_SECRET_KEY``, of the nonce and the
session it belongs to (the stored hash of the login cookie's token, or ``anonymous`` before
login): a value made up elsewhere, one from another session or an anonymous one is refused for
a session's writes, even if it is planted as the cookie. ``POST /login`` always issues a new
token bound to the new session (rotation).

Browsers also say where a request comes from: ``POST /login`` and cookie-authenticated writes
are refused (403) when ``Sec-Fetch-Site`` is ``cross-site`` or ``Origin`` is neither this host
nor in ``TRITONGATE_CORS_ORIGINS``; requests without those headers (programs) pass. Requests
authenticated by a bearer token or an API key carry no ambient credentials and are not checked.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from urllib.parse import urlsplit

from fastapi import Response
from starlette.requests import HTTPConnection, Request

from api.accounts import security
from api.accounts.cookies import cookie_name, is_secure
from api.errors import CrossSiteRequestError, CsrfError

CSRF_COOKIE = "csrftoken"  # over plain HTTP; "__Host-csrftoken" over HTTPS
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_COOKIE_MAX_AGE_S = 7 * 24 * 3600
ANONYMOUS = "anonymous"  # the session of a token issued before login
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_MAX_ORIGIN_ECHO = 100


def csrf_cookie_name(connection: HTTPConnection) -> str:
    return cookie_name(CSRF_COOKIE, is_secure(connection))


def session_binding(token_hash: str | None) -> str:
    """What a CSRF token is bound to: the session's stored token hash, or anonymous."""
    return token_hash or ANONYMOUS


def _signature(nonce: str, bound_to: str, secret_key: str) -> str:
    return security.sign(f"csrf|{bound_to}|{nonce}", secret_key)


def new_csrf_token(secret_key: str, bound_to: str = ANONYMOUS) -> str:
    """A token for the session ``bound_to`` (see :func:`session_binding`)."""
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_signature(nonce, bound_to, secret_key)}"


def is_valid_csrf_token(token: str, secret_key: str, bound_to: str = ANONYMOUS) -> bool:
    """Whether ``token`` was issued under ``secret_key`` for the session ``bound_to``."""
    nonce, _, signature = token.partition(".")
    return bool(nonce and signature) and security.constant_time_equal(
        signature, _signature(nonce, bound_to, secret_key)
    )


def set_csrf_cookie(response: Response, token: str, connection: HTTPConnection) -> None:
    response.set_cookie(
        csrf_cookie_name(connection),
        token,
        max_age=CSRF_COOKIE_MAX_AGE_S,
        path="/",
        secure=is_secure(connection),
        httponly=False,  # the page's script may read it to fill the header
        samesite="lax",
    )


def delete_csrf_cookie(response: Response, connection: HTTPConnection) -> None:
    response.delete_cookie(
        csrf_cookie_name(connection), path="/", secure=is_secure(connection), samesite="lax"
    )


def check_csrf(request: Request, secret_key: str, *, bound_to: str) -> None:
    """Refuse an unsafe request whose header does not match a valid CSRF cookie issued for the
    session ``bound_to`` (403)."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(csrf_cookie_name(request))
    header = request.headers.get(CSRF_HEADER)
    if not cookie or not header:
        raise CsrfError()
    if not security.constant_time_equal(cookie, header):
        raise CsrfError()
    if not is_valid_csrf_token(cookie, secret_key, bound_to):
        raise CsrfError()


def _host(netloc: str, scheme: str) -> str:
    """``netloc`` lower-cased, without the scheme's default port."""
    netloc = netloc.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(":" + default):
        return netloc[: -len(default) - 1]
    return netloc


def is_same_origin(origin: str, connection: HTTPConnection) -> bool:
    """Whether ``origin`` (an ``Origin`` header) names the host this request was sent to."""
    host = connection.headers.get("host")
    if not host:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False
    return _host(parts.netloc, parts.scheme) == _host(host, parts.scheme)


def check_same_site(connection: HTTPConnection, allowed_origins: Collection[str]) -> None:
    """Refuse (403) a browser request from another site: an ``Origin`` that is neither this
    host nor one of ``allowed_origins``, or, without an allowed ``Origin``,
    ``Sec-Fetch-Site: cross-site``. Requests with neither header pass."""
    origin = connection.headers.get("origin")
    if origin is not None and origin in allowed_origins:
        return
    if connection.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise CrossSiteRequestError("Cross-site request refused (Sec-Fetch-Site: cross-site)")
    if origin is not None and not is_same_origin(origin, connection):
        shown = origin[:_MAX_ORIGIN_ECHO]
        raise CrossSiteRequestError(
            f"Cross-site request refused: origin {shown!r} is neither this site nor allowed"
        )
