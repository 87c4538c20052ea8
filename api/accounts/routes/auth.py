"""Registration and login: ``/register``, ``/token`` (OAuth2 password flow), ``/login`` (cookie),
``/logout`` and ``/csrf``: the book's chapter 7 endpoints.

Registrations are limited per client address before the password is hashed (429); hashing and
verifying go through the bounded pool of api/accounts/security.py (503 when full). ``/login``
refuses
cross-site browser posts (403, api/accounts/csrf.py) and always issues a CSRF token bound to the new
session; cookies are named by scheme (api/accounts/cookies.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from api.accounts import security
from api.accounts.auth import (
    CurrentTokenHash,
    clear_login_cookies,
    read_session_cookie,
    set_session_cookie,
)
from api.accounts.crud import tokens as tokens_crud
from api.accounts.crud import users as users_crud
from api.accounts.csrf import (
    check_same_site,
    csrf_cookie_name,
    is_valid_csrf_token,
    new_csrf_token,
    session_binding,
    set_csrf_cookie,
)
from api.accounts.login_limits import client_ip
from api.accounts.revocation import close_streams
from api.accounts.schemas import CsrfToken, Token, UserCreate, UserRead
from api.db.engine import SessionDep
from api.db.tables import User
from api.deps import LoginLimiterDep, SettingsDep
from api.errors import NotAuthenticatedError
from api.platform.responses import error_responses

router = APIRouter(tags=["auth"])

BAD_CREDENTIALS = "Incorrect email or password"
HASHING_BUSY = (503, "Too many password hashes in progress; see Retry-After")
TOKEN_RESPONSES = error_responses(
    (401, BAD_CREDENTIALS),
    408,
    (429, "Too many failed login attempts for this account or from this address"),
    HASHING_BUSY,
)
LOGIN_RESPONSES = error_responses(
    (401, BAD_CREDENTIALS),
    408,
    (403, "A cross-site request (`Origin` or `Sec-Fetch-Site`)"),
    (429, "Too many failed login attempts for this account or from this address"),
    HASHING_BUSY,
)
REGISTER_RESPONSES = error_responses(
    (400, "Email already exists, or a malformed body"),
    (429, "Too many registrations from this address"),
    HASHING_BUSY,
)


async def _authenticate(
    request: Request, session: SessionDep, limiter: LoginLimiterDep, email: str, password: str
) -> User:
    """The user, after the brute-force limits (429 when exceeded, without checking the
    password): every attempt counts, a success resets the account's count."""
    host = client_ip(request)
    await limiter.acquire(email, host)
    user = await users_crud.authenticate(session, email, password)
    if user is None:
        raise NotAuthenticatedError(BAD_CREDENTIALS)
    await limiter.succeeded(email, host)
    return user


def _csrf_token(request: Request, response: Response, secret_key: str) -> str:
    """The caller's CSRF token if it is valid for the caller's session (or, without a login
    cookie, an anonymous one), else a new one set as the cookie."""
    cookie = read_session_cookie(request)
    bound_to = session_binding(security.hash_secret(cookie) if cookie else None)
    current = request.cookies.get(csrf_cookie_name(request))
    if current and is_valid_csrf_token(current, secret_key, bound_to):
        return current
    token = new_csrf_token(secret_key, bound_to)
    set_csrf_cookie(response, token, request)
    return token


@router.post("/register", status_code=status.HTTP_201_CREATED, responses=REGISTER_RESPONSES)
async def register(
    body: UserCreate, request: Request, session: SessionDep, limiter: LoginLimiterDep
) -> UserRead:
    """Create an account (password: 8 to 256 characters, else 422). Attempts are limited per
    client address (429 with `Retry-After`, before any hashing)."""
    await limiter.acquire_registration(client_ip(request))
    hashed = await security.hash_password_in_thread(body.password)
    user = await users_crud.create_user(session, body.email, hashed)
    return UserRead.model_validate(user)


@router.post("/token", responses=TOKEN_RESPONSES)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: LoginLimiterDep,
) -> Token:
    """OAuth2 password flow: `username` is the email. The token expires (24 h by default).
    Failed attempts are limited per account and per address (429 with `Retry-After`)."""
    user = await _authenticate(request, session, limiter, form.username, form.password)
    lifetime = settings.access_token_expire_s
    value, _ = await tokens_crud.create_access_token(session, user, timedelta(seconds=lifetime))
    return Token(access_token=value, expires_in=lifetime)


@router.post("/login", responses=LOGIN_RESPONSES)
async def login(
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    limiter: LoginLimiterDep,
) -> CsrfToken:
    """Browser login: sets the HttpOnly, SameSite=Lax `token` cookie (over HTTPS: Secure and
    named `__Host-token`) and a new CSRF cookie bound to this session, whose value (also in the
    body) writes must send as `x-csrf-token`. A cross-site browser post is refused (403). Failed
    attempts are limited as for `/token`."""
    check_same_site(request, settings.cors_origins)
    user = await _authenticate(request, session, limiter, email, password)
    lifetime = settings.access_token_expire_s
    value, row = await tokens_crud.create_access_token(session, user, timedelta(seconds=lifetime))
    set_session_cookie(response, value, lifetime, request)
    csrf_token = new_csrf_token(settings.secret_key_value, session_binding(row.token_hash))
    set_csrf_cookie(response, csrf_token, request)
    return CsrfToken(csrf_token=csrf_token)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        (400, "Authenticated by an API key: no token to revoke"),
        401,
        (403, "A cookie write from another site or without a valid `x-csrf-token`"),
    ),
)
async def logout(
    token_hash: CurrentTokenHash, request: Request, response: Response, session: SessionDep
) -> None:
    """Revoke the access token of this request (bearer or cookie) and clear the cookies."""
    await tokens_crud.revoke_token(session, token_hash)
    await close_streams(request.app, "logged out", credential_hash=token_hash)
    clear_login_cookies(response, request)


@router.get("/csrf")
async def csrf(request: Request, response: Response, settings: SettingsDep) -> CsrfToken:
    """Set the CSRF cookie (the double-submit value, bound to the caller's login cookie if any);
    the body carries the same value."""
    return CsrfToken(csrf_token=_csrf_token(request, response, settings.secret_key_value))
