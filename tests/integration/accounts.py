"""Users and credentials for the API tests, made in the app's real database.

Going through ``/register`` and ``/token`` costs an argon2 hash each (~0.1 s); tests that are
not about those endpoints create users and tokens with the same CRUD functions the routes use,
reusing one password hash.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI

from api.accounts import security
from api.accounts.crud import api_keys as api_keys_crud
from api.accounts.crud import tokens as tokens_crud
from api.accounts.crud import users as users_crud
from api.db.engine import Database
from api.db.tables import User

PASSWORD = "correct horse battery staple"
_numbers = itertools.count(1)


@functools.cache
def password_hash() -> str:
    return security.hash_password(PASSWORD)


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _database(app: FastAPI) -> Database:
    return app.state.database


def unique_email(stem: str = "user") -> str:
    return f"{stem}{next(_numbers)}@example.com"


async def make_account(app: FastAPI, *, admin: bool = False, stem: str = "user") -> Account:
    """A user (password :data:`PASSWORD`) with a fresh bearer token."""
    async with _database(app).sessions() as session:
        user = await users_crud.create_user(
            session, unique_email(stem), password_hash(), is_admin=admin
        )
        token, _ = await tokens_crud.create_access_token(session, user, timedelta(hours=1))
        return Account(user.id, user.email, token)


async def issue_token(app: FastAPI, user_id: int, lifetime: timedelta) -> str:
    """Another token for the user; a negative lifetime gives an expired one."""
    async with _database(app).sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        token, _ = await tokens_crud.create_access_token(session, user, lifetime)
        return token


async def issue_api_key(app: FastAPI, user_id: int, name: str = "tests") -> str:
    async with _database(app).sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        key, _ = await api_keys_crud.create_api_key(session, user, name)
        return key
