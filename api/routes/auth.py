"""Registration and login: ``/register``, ``/token`` (OAuth2 password flow), ``/login`` (cookie),
``/logout`` and ``/csrf``: the book's chapter 7 endpoints."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from api import security
from api.auth import TOKEN_COOKIE, CurrentTokenHash
from api.crud import tokens as tokens_crud
from api.crud import users as users_crud
from api.csrf import CSRF_COOKIE, is_valid_csrf_token, new_csrf_token, set_csrf_cookie
from api.db import SessionDep
from api.deps import LoginLimiterDep, SettingsDep
from api.errors import NotAuthenticatedError
from api.login_limits import client_ip
from api.models import User
from api.responses import error_responses
from api.schemas.users import CsrfToken, Token, UserCreate, UserRead

router = APIRouter(tags=["auth"])

BAD_CREDENTIALS = "Incorrect email or password"
LOGIN_RESPONSES = error_responses(
    (401, BAD_CREDENTIALS),
    (429, "Too many failed login attempts for this account or from this address"),
)


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


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
    """The caller's valid CSRF token, or a new one set as the cookie."""
    current = request.cookies.get(CSRF_COOKIE)
    if current and is_valid_csrf_token(current, secret_key):
        return current
    token = new_csrf_token(secret_key)
    set_csrf_cookie(response, token, secure=_is_https(request))
    return token


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses((400, "Email already exists, or a malformed body")),
)
async def register(body: UserCreate, session: SessionDep) -> UserRead:
    """Create an account (password: 8 to 256 characters, else 422)."""
    hashed = await security.hash_password_in_thread(body.password)
    user = await users_crud.create_user(session, body.email, hashed)
    return UserRead.model_validate(user)


@router.post("/token", responses=LOGIN_RESPONSES)
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
    """Browser login: sets the HttpOnly, SameSite=Lax `token` cookie (Secure over HTTPS) and the
    CSRF cookie, whose value (also in the body) writes must send as `x-csrf-token`. Failed
    attempts are limited as for `/token`."""
    user = await _authenticate(request, session, limiter, email, password)
    lifetime = settings.access_token_expire_s
    value, _ = await tokens_crud.create_access_token(session, user, timedelta(seconds=lifetime))
    response.set_cookie(
        TOKEN_COOKIE,
        value,
        max_age=lifetime,
        secure=_is_https(request),
        httponly=True,
        samesite="lax",
    )
    return CsrfToken(csrf_token=_csrf_token(request, response, settings.secret_key_value))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses((400, "Authenticated by an API key: no token to revoke"), 401, 403),
)
async def logout(token_hash: CurrentTokenHash, response: Response, session: SessionDep) -> None:
    """Revoke the access token of this request (bearer or cookie) and clear the cookie."""
    await tokens_crud.revoke_token(session, token_hash)
    response.delete_cookie(TOKEN_COOKIE)


@router.get("/csrf")
async def csrf(request: Request, response: Response, settings: SettingsDep) -> CsrfToken:
    """Set the CSRF cookie (the double-submit value); the body carries the same value."""
    return CsrfToken(csrf_token=_csrf_token(request, response, settings.secret_key_value))
