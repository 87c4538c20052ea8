"""A user's API keys (``/users/me/api-keys``): for programmatic clients, sent as ``X-API-Key``.

A key can list the keys but not create or delete one: that needs a login session (a bearer
token or the login cookie; api/accounts/auth.py ``SessionPrincipal``), so a leaked key cannot mint
others or remove the owner's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api.accounts.auth import CurrentUser, SessionPrincipal
from api.accounts.crud import api_keys as api_keys_crud
from api.accounts.revocation import close_streams
from api.accounts.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from api.db.engine import SessionDep
from api.errors import NotFoundError, PermissionDeniedError
from api.platform.ids import PathId
from api.platform.responses import error_responses

router = APIRouter(prefix="/users/me/api-keys", tags=["api keys"])


@router.get("", responses=error_responses(401))
async def list_keys(user: CurrentUser, session: SessionDep) -> list[ApiKeyRead]:
    """Your keys: names and prefixes only, never the keys themselves."""
    return [
        ApiKeyRead.model_validate(key)
        for key in await api_keys_crud.list_api_keys(session, user.id)
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        400,
        401,
        (
            403,
            "The admin scope asked for by someone who is not an admin, authenticated by an API "
            "key (a login session is needed), or a cookie write without a valid CSRF header",
        ),
    ),
)
async def create_key(
    body: ApiKeyCreate, principal: SessionPrincipal, session: SessionDep
) -> ApiKeyCreated:
    """A new key, shown this once (only its hash is stored). `admin: true` (admins only) gives
    the key the admin scope. Needs a login session: an API key gets 403."""
    if body.admin and not principal.is_admin:
        raise PermissionDeniedError("Only admins may create keys with the admin scope")
    key, row = await api_keys_crud.create_api_key(
        session, principal.user, body.name, admin=body.admin
    )
    return ApiKeyCreated(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        admin=row.is_admin,
        created_at=row.created_at,
        key=key,
    )


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        401,
        (
            403,
            "Authenticated by an API key (a login session is needed), or a cookie write "
            "without a valid CSRF header",
        ),
        (404, "You have no key with this id"),
    ),
)
async def delete_key(
    key_id: PathId, principal: SessionPrincipal, request: Request, session: SessionDep
) -> None:
    """Delete a key; requests with it fail from now on, and the streams opened with it are
    closed. Needs a login session: an API key gets 403."""
    key_hash = await api_keys_crud.delete_api_key(session, principal.user.id, key_id)
    if key_hash is None:
        raise NotFoundError(f"API key {key_id} not found")
    await close_streams(request.app, "API key deleted", credential_hash=key_hash)
