"""The current user (``/users/me``) and the admins' token revocation."""

from __future__ import annotations

from fastapi import APIRouter, status

from api import security
from api.auth import AdminUser, CurrentPrincipal
from api.crud import tokens as tokens_crud
from api.crud import users as users_crud
from api.db import SessionDep
from api.errors import NotFoundError
from api.ids import PathId
from api.responses import error_responses
from api.schemas.users import UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", responses=error_responses(401))
async def read_me(principal: CurrentPrincipal) -> UserRead:
    return UserRead.model_validate(principal.user)


@router.patch(
    "/me", responses=error_responses((400, "Email already exists, or a malformed body"), 401, 403)
)
async def update_me(body: UserUpdate, principal: CurrentPrincipal, session: SessionDep) -> UserRead:
    """Change the email and/or password; a new password revokes every other access token."""
    hashed = None
    if body.password is not None:
        hashed = await security.hash_password_in_thread(body.password)
    user = await users_crud.update_user(
        session, principal.user, email=body.email, hashed_password=hashed
    )
    if hashed is not None:
        await tokens_crud.revoke_user_tokens(session, user.id, keep_hash=principal.token_hash)
    return UserRead.model_validate(user)


@router.delete(
    "/{user_id}/tokens",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        401,
        (403, "Not an admin (or a cookie write without the CSRF header)"),
        (404, "No such user"),
    ),
)
async def revoke_tokens(user_id: PathId, admin: AdminUser, session: SessionDep) -> None:
    """Admins only: revoke every access token of a user (API keys are left alone)."""
    if await users_crud.get_user(session, user_id) is None:
        raise NotFoundError(f"User {user_id} not found")
    await tokens_crud.revoke_user_tokens(session, user_id)
