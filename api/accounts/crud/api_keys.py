"""API keys: created with a name (and optionally the admin scope), shown once, stored as
SHA-256, deleted by their owner, or all at once when the owner's credentials are revoked
(password change, sign-out everywhere, an admin's revocation, deactivation); a demotion deletes
the admin-scope ones."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts import security
from api.db.tables import ApiKey, User


async def create_api_key(
    session: AsyncSession, user: User, name: str, *, admin: bool = False
) -> tuple[str, ApiKey]:
    """A new key for ``user``: the value (return it once, it is not stored) and its row.
    ``admin``: the key's admin scope (the caller checks that ``user`` is an admin)."""
    key = security.new_api_key()
    row = ApiKey(
        user_id=user.id,
        name=name,
        prefix=security.api_key_display_prefix(key),
        key_hash=security.hash_secret(key),
        is_admin=admin,
    )
    session.add(row)
    await session.commit()
    return key, row


async def list_api_keys(session: AsyncSession, user_id: int) -> Sequence[ApiKey]:
    result = await session.execute(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
    )
    return result.scalars().all()


async def get_api_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The key's row (with its owner loaded) if the key exists and its owner is active."""
    result = await session.execute(
        select(ApiKey)
        .join(User, ApiKey.user_id == User.id)
        .where(ApiKey.key_hash == security.hash_secret(key), User.is_active.is_(True))
    )
    return result.unique().scalar_one_or_none()


async def get_user_by_api_key(session: AsyncSession, key: str) -> User | None:
    """The active owner of this key, else ``None``."""
    row = await get_api_key(session, key)
    return row.user if row is not None else None


async def delete_api_key(session: AsyncSession, user_id: int, key_id: int) -> str | None:
    """Delete one of the user's keys: its stored hash (to close the streams opened with it),
    ``None`` if the user has no key with that id."""
    result = await session.execute(
        delete(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.user_id == user_id)
        .returning(ApiKey.key_hash)
    )
    key_hash = result.scalar_one_or_none()
    await session.commit()
    return key_hash


async def delete_user_api_keys(
    session: AsyncSession, user_id: int, *, admin_scope_only: bool = False
) -> int:
    """Delete every key of a user (only those with the admin scope if ``admin_scope_only``) in
    the caller's transaction (no commit); the number deleted."""
    statement = delete(ApiKey).where(ApiKey.user_id == user_id)
    if admin_scope_only:
        statement = statement.where(ApiKey.is_admin.is_(True))
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]
