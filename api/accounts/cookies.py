"""The names of the login and CSRF cookies, by the request's scheme.

Over HTTPS (``https`` or ``wss`` as the server sees it: TLS, or ``X-Forwarded-Proto`` from a
proxy the server trusts) the cookies carry the ``__Host-`` prefix, which browsers accept only
with ``Secure``, ``Path=/`` and no ``Domain``: neither a sibling subdomain nor a plain-HTTP page
of the same host can set or overwrite them. Over plain HTTP (the local demo, ``make run``) a
browser refuses such a cookie (no ``Secure`` there), so they keep their plain names. A request is
read under the one name that matches its scheme.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

HOST_PREFIX = "__Host-"
SECURE_SCHEMES = frozenset({"https", "wss"})


def is_secure(connection: HTTPConnection) -> bool:
    return connection.url.scheme in SECURE_SCHEMES


def cookie_name(base: str, secure: bool) -> str:
    """``base``, with the ``__Host-`` prefix over HTTPS."""
    return HOST_PREFIX + base if secure else base
