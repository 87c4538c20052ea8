"""Users: create, look up, authenticate, update, revoke every credential, (de)activate,
promote and demote.

Ending a user's credentials deletes their rows (access tokens and API keys), in the same
transaction as the change that ends them: a new password (every other token, every key),
deactivation (everything), demotion (the admin-scope keys, so a later promotion revives none).
Inactive users are refused by every lookup (login, tokens, keys) whatever rows remain.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts import security
from api.accounts.crud import api_keys as api_keys_crud
from api.accounts.crud import tokens as tokens_crud
from api.db.tables import User
from api.errors import EmailAlreadyExistsError


async def create_user(
    session: AsyncSession, email: str, hashed_password: str, *, is_admin: bool = False
) -> User:
    """Insert a user; a taken email (even one inserted concurrently) raises 400, never 500."""
    user = User(email=email, hashed_password=hashed_password, is_admin=is_admin)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise EmailAlreadyExistsError() from error
    return user


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    if "\x00" in email:  # no stored address has one, and PostgreSQL refuses it in a query
        return None
    result = await session.execute(select(User).where(User.email == email.lower()))
    return result.scalar_one_or_none()


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The active user with this email and password, else ``None``.

    The password is hashed whether or not the user exists (against a dummy hash when not), so
    the answer takes as long for an unknown email as for a wrong password.
    """
    user = await get_user_by_email(session, email)
    if user is not None:
        stored = user.hashed_password
    else:  # made once per process (cached), in a thread: argon2 never runs on the event loop
        stored = await asyncio.to_thread(security.dummy_password_hash)
    check = await security.verify_password_in_thread(password, stored)
    if user is None or not check.valid or not user.is_active:
        return None
    if check.updated_hash is not None:  # stored with outdated parameters: upgrade it now
        user.hashed_password = check.updated_hash
        await session.commit()
    return user


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    email: str | None = None,
    hashed_password: str | None = None,
    keep_token_hash: str | None = None,
) -> User:
    """Change the email and/or the password hash. A new password also deletes every access
    token of the user but ``keep_token_hash`` (the session making the change) and every API
    key, in the same transaction; a taken email raises 400."""
    if email is not None:
        user.email = email
    if hashed_password is not None:
        user.hashed_password = hashed_password
        await _delete_credentials(session, user.id, keep_token_hash=keep_token_hash)
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise EmailAlreadyExistsError() from error
    return user


async def _delete_credentials(
    session: AsyncSession, user_id: int, *, keep_token_hash: str | None = None
) -> None:
    await tokens_crud.delete_user_tokens(session, user_id, keep_hash=keep_token_hash)
    await api_keys_crud.delete_user_api_keys(session, user_id)


async def revoke_credentials(session: AsyncSession, user_id: int) -> None:
    """Delete every access token and every API key of a user."""
    await _delete_credentials(session, user_id)
    await session.commit()


async def update_status(
    session: AsyncSession,
    user: User,
    *,
    is_active: bool | None = None,
    is_admin: bool | None = None,
) -> User:
    """Activate or deactivate, promote or demote (``None``: unchanged), in one transaction.
    Deactivating deletes every token and API key of the user (a reactivated user starts with
    none); demoting deletes the user's admin-scope keys (a later promotion revives none)."""
    if is_active is not None:
        user.is_active = is_active
        if not is_active:
            await _delete_credentials(session, user.id)
    if is_admin is not None:
        user.is_admin = is_admin
        if not is_admin:
            await api_keys_crud.delete_user_api_keys(session, user.id, admin_scope_only=True)
    await session.commit()
    return user


async def set_admin(session: AsyncSession, user: User, is_admin: bool = True) -> User:
    """Promote or demote (``python -m api.accounts.admin``); see :func:`update_status`."""
    return await update_status(session, user, is_admin=is_admin)
