"""Users: create, look up, authenticate, update."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api import security
from api.errors import EmailAlreadyExistsError
from api.models import User


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
    stored = user.hashed_password if user is not None else security.dummy_password_hash()
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
) -> User:
    if email is not None:
        user.email = email
    if hashed_password is not None:
        user.hashed_password = hashed_password
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise EmailAlreadyExistsError() from error
    return user


async def set_admin(session: AsyncSession, user: User, is_admin: bool = True) -> User:
    user.is_admin = is_admin
    await session.commit()
    return user
