"""Who is calling: a bearer token, an API key or the login cookie, as ``Annotated`` dependencies.

The security schemes are declared to OpenAPI, so the docs' "Authorize" dialog offers the
OAuth2 password flow (``POST /token``) and the ``X-API-Key`` header. Credentials are tried in that
order; the first one present decides (an invalid one is a 401, never a fall-through). The login
cookie is ``token`` over plain HTTP and ``__Host-token`` over HTTPS (api/accounts/cookies.py;
declared as two cookie schemes), read under the name that matches the request's scheme
(:func:`read_session_cookie`). A request authenticated by the cookie must also pass the
same-site and CSRF checks (api/accounts/csrf.py) when it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, APIKeyHeader, OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from api.accounts.cookies import cookie_name, is_secure
from api.accounts.crud import api_keys as api_keys_crud
from api.accounts.crud import tokens as tokens_crud
from api.accounts.csrf import SAFE_METHODS, check_csrf, check_same_site, delete_csrf_cookie
from api.db.engine import SessionDep
from api.db.tables import User
from api.deps import SettingsDep
from api.errors import ApiError, NotAuthenticatedError, PermissionDeniedError

TOKEN_COOKIE = "token"  # the book's TOKEN_COOKIE_NAME, over plain HTTP
HOST_TOKEN_COOKIE = cookie_name(TOKEN_COOKIE, secure=True)  # over HTTPS: "__Host-token"
API_KEY_HEADER = "X-API-Key"

bearer_scheme = OAuth2PasswordBearer(
    tokenUrl="/token",
    scheme_name="OAuth2PasswordBearer",
    description="`POST /token` with your email and password; send `Authorization: Bearer …`.",
    auto_error=False,
)
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="APIKeyHeader",
    description="A key created at `POST /users/me/api-keys`.",
    auto_error=False,
)
cookie_scheme = APIKeyCookie(
    name=TOKEN_COOKIE,
    scheme_name="TokenCookie",
    description=(
        "Set by `POST /login` over plain HTTP (over HTTPS: `__Host-token`); writes also need "
        "the `x-csrf-token` header and a same-site `Origin`."
    ),
    auto_error=False,
)
host_cookie_scheme = APIKeyCookie(
    name=HOST_TOKEN_COOKIE,
    scheme_name="HostTokenCookie",
    description=(
        "Set by `POST /login` over HTTPS (over plain HTTP: `token`); writes also need the "
        "`x-csrf-token` header and a same-site `Origin`."
    ),
    auto_error=False,
)


def session_cookie_name(connection: HTTPConnection) -> str:
    """The login cookie's name for this request's scheme."""
    return HOST_TOKEN_COOKIE if is_secure(connection) else TOKEN_COOKIE


def read_session_cookie(connection: HTTPConnection) -> str | None:
    """The login cookie's value under the name that matches the scheme (HTTP and WebSocket)."""
    return connection.cookies.get(session_cookie_name(connection)) or None


def set_session_cookie(
    response: Response, token: str, max_age_s: int, connection: HTTPConnection
) -> None:
    """The login cookie: HttpOnly, SameSite=Lax, Path=/, Secure and ``__Host-`` over HTTPS."""
    response.set_cookie(
        session_cookie_name(connection),
        token,
        max_age=max_age_s,
        path="/",
        secure=is_secure(connection),
        httponly=True,
        samesite="lax",
    )


def clear_login_cookies(response: Response, connection: HTTPConnection) -> None:
    """Delete the login cookie and the CSRF cookie (logout, signing out everywhere)."""
    response.delete_cookie(
        session_cookie_name(connection), path="/", secure=is_secure(connection), httponly=True
    )
    delete_csrf_cookie(response, connection)


AuthMethod = Literal["bearer", "api_key", "cookie"]


@dataclass(frozen=True)
class Principal:
    """The authenticated user and how they authenticated."""

    user: User
    method: AuthMethod
    # The stored hash of the access token used (bearer and cookie), for logout.
    token_hash: str | None = None
    # An API key's admin scope (tokens and the cookie carry the user's full rights).
    key_admin_scope: bool = False

    @property
    def is_admin(self) -> bool:
        """Admin rights for this request: an admin user, and through an API key only with the
        key's admin scope."""
        if self.method == "api_key":
            return self.user.is_admin and self.key_admin_scope
        return self.user.is_admin


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
    host_cookie: Annotated[str | None, Depends(host_cookie_scheme)],
) -> Principal:
    """The caller, or 401 (403 for a cookie-authenticated write from another site or without
    a valid CSRF header)."""
    if bearer:
        token = await tokens_crud.get_valid_token(session, bearer)
        if token is None:
            raise NotAuthenticatedError("Invalid, expired or revoked token")
        return Principal(token.user, "bearer", token.token_hash)
    if api_key:
        row = await api_keys_crud.get_api_key(session, api_key)
        if row is None:
            raise NotAuthenticatedError("Invalid API key")
        return Principal(row.user, "api_key", key_admin_scope=row.is_admin)
    session_cookie = host_cookie if is_secure(request) else cookie  # = read_session_cookie
    if session_cookie:
        token = await tokens_crud.get_valid_token(session, session_cookie)
        if token is None:
            raise NotAuthenticatedError("Invalid, expired or revoked session cookie")
        if request.method not in SAFE_METHODS:
            check_same_site(request, settings.cors_origins)
            check_csrf(request, settings.secret_key_value, bound_to=token.token_hash)
        return Principal(token.user, "cookie", token.token_hash)
    raise NotAuthenticatedError("Not authenticated")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_token_hash(principal: CurrentPrincipal) -> str:
    """The stored hash of the access token (bearer or cookie) this request came with; 400 for
    a request authenticated by an API key."""
    if principal.token_hash is None:
        raise ApiError("This request needs an access token (bearer or cookie), not an API key")
    return principal.token_hash


CurrentTokenHash = Annotated[str, Depends(get_current_token_hash)]


async def get_admin_principal(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        detail = "Admin rights required"
        if principal.method == "api_key" and principal.user.is_admin:
            detail += ": this API key has no admin scope"
        raise PermissionDeniedError(detail)
    return principal


AdminPrincipal = Annotated[Principal, Depends(get_admin_principal)]


async def get_admin_user(principal: AdminPrincipal) -> User:
    return principal.user


AdminUser = Annotated[User, Depends(get_admin_user)]


# Everything that changes credentials (the password or email, API keys, signing out
# everywhere) needs a login session: an API key, meant for scripts and easy to leak through
# them, can use the account but never take it over.
SESSION_REQUIRED = (
    "This needs a login session (a bearer token from POST /token or the login cookie): "
    "an API key cannot change credentials or manage API keys"
)


async def get_session_principal(principal: CurrentPrincipal) -> Principal:
    """The caller authenticated by a login session (bearer token or cookie); 403 for an API
    key, whatever its scope."""
    if principal.method == "api_key" or principal.token_hash is None:
        raise PermissionDeniedError(SESSION_REQUIRED)
    return principal


SessionPrincipal = Annotated[Principal, Depends(get_session_principal)]


async def get_admin_session_principal(principal: AdminPrincipal) -> Principal:
    """An admin through a login session; 403 for an API key, even one with the admin scope (a
    leaked key must not make or unmake admins)."""
    return await get_session_principal(principal)


AdminSessionPrincipal = Annotated[Principal, Depends(get_admin_session_principal)]
