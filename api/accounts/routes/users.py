"""The current user (``/users/me``) and the admins' account management (``/users/{user_id}``).

Credentials change only through a login session (a bearer token or the login cookie): an API key
gets 403 on ``PATCH /users/me`` and ``DELETE /users/me/tokens`` (api/accounts/auth.py,
``SessionPrincipal``). Changing the email or the password needs the current password, whose
wrong guesses count as failed logins of the account (api/accounts/login_limits.py). Every revocation
deletes the rows (tokens and API keys) and closes the user's streams in this worker at once
(api/accounts/revocation.py; other workers' streams notice at their next re-validation).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.accounts import security
from api.accounts.auth import (
    AdminSessionPrincipal,
    AdminUser,
    CurrentPrincipal,
    SessionPrincipal,
    clear_login_cookies,
)
from api.accounts.crud import users as users_crud
from api.accounts.login_limits import LoginLimiter, client_ip
from api.accounts.revocation import close_streams
from api.accounts.schemas import UserAdminUpdate, UserRead, UserUpdate
from api.db.engine import SessionDep
from api.db.tables import User
from api.deps import LoginLimiterDep
from api.errors import ApiError, NotFoundError, PermissionDeniedError
from api.platform.ids import PathId
from api.platform.responses import error_responses

router = APIRouter(prefix="/users", tags=["users"])

WRONG_CURRENT_PASSWORD = "Current password is incorrect"
SESSION_ONLY_403 = "Authenticated by an API key (a login session is needed)"
COOKIE_WRITE_403 = "a cookie write from another site or without a valid `x-csrf-token`"


@router.get("/me", responses=error_responses(401))
async def read_me(principal: CurrentPrincipal) -> UserRead:
    return UserRead.model_validate(principal.user)


async def _check_current_password(
    request: Request, limiter: LoginLimiter, user: User, password: str
) -> None:
    """403 unless ``password`` is the user's; counted like a login attempt of the account
    (429 over the limits, before any hashing), so a stolen session cannot guess it."""
    host = client_ip(request)
    await limiter.acquire(user.email, host)
    check = await security.verify_password_in_thread(password, user.hashed_password)
    if not check.valid:
        raise PermissionDeniedError(WRONG_CURRENT_PASSWORD)
    await limiter.succeeded(user.email, host)


@router.patch(
    "/me",
    responses=error_responses(
        (400, "Email already exists, or a malformed body"),
        401,
        (403, f"A wrong `current_password`; {SESSION_ONLY_403}; or {COOKIE_WRITE_403}"),
        (429, "Too many wrong passwords for this account or from this address"),
        (503, "Too many password hashes in progress; see Retry-After"),
    ),
)
async def update_me(
    body: UserUpdate,
    principal: SessionPrincipal,
    request: Request,
    session: SessionDep,
    limiter: LoginLimiterDep,
) -> UserRead:
    """Change the email and/or password, with `current_password` (required for either: 422
    without it, 403 when wrong; wrong ones count as failed logins, 429 over the limit). Needs a
    login session: an API key gets 403. A new password revokes every other access token of the
    user (this session goes on) and every API key, and closes the user's open streams."""
    user = principal.user
    if body.current_password is not None:
        await _check_current_password(request, limiter, user, body.current_password)
    hashed = None
    if body.password is not None:
        hashed = await security.hash_password_in_thread(body.password)
    user = await users_crud.update_user(
        session,
        user,
        email=body.email,
        hashed_password=hashed,
        keep_token_hash=principal.token_hash,
    )
    if hashed is not None:
        await close_streams(request.app, "password changed", user_id=user.id)
    return UserRead.model_validate(user)


@router.delete(
    "/me/tokens",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, (403, f"{SESSION_ONLY_403}, or {COOKIE_WRITE_403}")),
)
async def sign_out_everywhere(
    principal: SessionPrincipal, request: Request, response: Response, session: SessionDep
) -> None:
    """Sign out everywhere: revoke every access token of yours (this one included) and every
    API key, close your open streams and clear the login cookies. Needs a login session: an API
    key gets 403."""
    user_id = principal.user.id
    await users_crud.revoke_credentials(session, user_id)
    await close_streams(request.app, "signed out everywhere", user_id=user_id)
    clear_login_cookies(response, request)


@router.delete(
    "/{user_id}/tokens",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        401,
        (403, f"Not an admin, or {COOKIE_WRITE_403}"),
        (404, "No such user"),
    ),
)
async def revoke_tokens(
    user_id: PathId, admin: AdminUser, request: Request, session: SessionDep
) -> None:
    """Admins only: revoke every credential of a user (every access token and every API key)
    and close their open streams. The account stays active: the user can log in again (see
    `PATCH /users/{user_id}` to deactivate it)."""
    if await users_crud.get_user(session, user_id) is None:
        raise NotFoundError(f"User {user_id} not found")
    await users_crud.revoke_credentials(session, user_id)
    await close_streams(request.app, "credentials revoked by an admin", user_id=user_id)


@router.patch(
    "/{user_id}",
    responses=error_responses(
        (400, "An admin deactivating or demoting themselves, or a malformed body"),
        401,
        (
            403,
            "Not an admin through a login session (API keys are refused, even with the admin "
            f"scope), or {COOKIE_WRITE_403}",
        ),
        (404, "No such user"),
    ),
)
async def update_user_status(
    user_id: PathId,
    body: UserAdminUpdate,
    admin: AdminSessionPrincipal,
    request: Request,
    session: SessionDep,
) -> UserRead:
    """Admins only, through a login session: activate or deactivate a user, promote or demote
    them. Deactivating revokes every access token and API key of the user and closes their
    streams; their logins are refused until an admin reactivates them. Demoting deletes their
    admin-scope API keys (a later promotion revives none). You cannot deactivate or demote
    yourself (400): ask another admin, or use `python -m api.accounts.admin --demote`."""
    user = await users_crud.get_user(session, user_id)
    if user is None:
        raise NotFoundError(f"User {user_id} not found")
    if user.id == admin.user.id and False in (body.is_active, body.is_admin):
        raise ApiError("You cannot deactivate or demote yourself")
    user = await users_crud.update_status(
        session, user, is_active=body.is_active, is_admin=body.is_admin
    )
    if body.is_active is False:
        await close_streams(request.app, "account deactivated", user_id=user.id)
    return UserRead.model_validate(user)
