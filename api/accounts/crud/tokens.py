"""Access tokens: issued at login, stored as SHA-256, found by hash, revoked by deletion."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts import security
from api.db.tables import AccessToken, User
from api.db.types import utcnow


async def create_access_token(
    session: AsyncSession, user: User, lifetime: timedelta
) -> tuple[str, AccessToken]:
    """A new token for ``user`` (the value, to hand out once, and its row); also drops the
    user's expired tokens."""
    now = utcnow()
    await session.execute(
        delete(AccessToken).where(AccessToken.user_id == user.id, AccessToken.expires_at <= now)
    )
    token = security.new_token()
    row = AccessToken(
        token_hash=security.hash_secret(token),
        user_id=user.id,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    await session.commit()
    return token, row


async def get_valid_token(session: AsyncSession, token: str) -> AccessToken | None:
    """The unexpired token row (with its active user) for this token value, else ``None``."""
    result = await session.execute(
        select(AccessToken)
        .join(AccessToken.user)
        .where(
            AccessToken.token_hash == security.hash_secret(token),
            AccessToken.expires_at > utcnow(),
            User.is_active.is_(True),
        )
    )
    return result.scalar_one_or_none()


async def revoke_token(session: AsyncSession, token_hash: str) -> None:
    await session.execute(delete(AccessToken).where(AccessToken.token_hash == token_hash))
    await session.commit()


async def delete_user_tokens(
    session: AsyncSession, user_id: int, *, keep_hash: str | None = None
) -> int:
    """Delete every token of a user (but ``keep_hash``) in the caller's transaction (no
    commit); the number deleted."""
    statement = delete(AccessToken).where(AccessToken.user_id == user_id)
    if keep_hash is not None:
        statement = statement.where(AccessToken.token_hash != keep_hash)
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]
