"""``/users/me`` and API keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from api import security
from api.models import ApiKey
from tests.integration.accounts import PASSWORD, issue_token, make_account, unique_email
from tests.integration.api_client import db_app_settings, running_app


def test_read_and_update_me(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            other = await make_account(app)
            me = await client.get("/users/me", headers=account.headers)
            assert me.status_code == 200
            assert me.json()["email"] == account.email and me.json()["id"] == account.id

            taken = await client.patch(
                "/users/me", json={"email": other.email}, headers=account.headers
            )
            assert taken.status_code == 400 and taken.json() == {"detail": "Email already exists"}
            short = await client.patch("/users/me", json={"password": "x"}, headers=account.headers)
            assert short.status_code == 422

            email = unique_email("renamed")
            renamed = await client.patch(
                "/users/me", json={"email": email}, headers=account.headers
            )
            assert renamed.status_code == 200 and renamed.json()["email"] == email

            # A new password: this session goes on, the user's other sessions end.
            second = {"Authorization": f"Bearer {await issue_token(app, account.id, timedelta(1))}"}
            changed = await client.patch(
                "/users/me", json={"password": "a brand new password"}, headers=account.headers
            )
            assert changed.status_code == 200
            assert (await client.get("/users/me", headers=account.headers)).status_code == 200
            assert (await client.get("/users/me", headers=second)).status_code == 401
            old = await client.post("/token", data={"username": email, "password": PASSWORD})
            assert old.status_code == 401
            new = await client.post(
                "/token", data={"username": email, "password": "a brand new password"}
            )
            assert new.status_code == 200

    asyncio.run(check())


def test_api_keys_are_shown_once_stored_hashed_and_revocable(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            other = await make_account(app)
            created = await client.post(
                "/users/me/api-keys", json={"name": "benchmarks"}, headers=account.headers
            )
            assert created.status_code == 201, created.text
            body = created.json()
            key = body["key"]
            assert key.startswith("tg_") and body["prefix"] == key[: len(body["prefix"])]
            assert body["name"] == "benchmarks"

            listed = await client.get("/users/me/api-keys", headers=account.headers)
            assert listed.status_code == 200
            assert [k["name"] for k in listed.json()] == ["benchmarks"]
            assert key not in listed.text and "key" not in listed.json()[0]
            assert (await client.get("/users/me/api-keys", headers=other.headers)).json() == []

            async with app.state.database.sessions() as session:
                stored = (await session.execute(select(ApiKey))).scalars().one()
            assert stored.key_hash != key and stored.key_hash == security.hash_secret(key)
            assert key not in (stored.name, stored.prefix)

            with_key = {"X-API-Key": key}
            me = await client.get("/users/me", headers=with_key)
            assert me.status_code == 200 and me.json()["id"] == account.id
            post = await client.post(
                "/posts", json={"title": "t", "content": "c"}, headers=with_key
            )
            assert post.status_code == 201 and post.json()["author_id"] == account.id
            # Logging out ends a token session; with an API key there is none.
            assert (await client.post("/logout", headers=with_key)).status_code == 400

            key_url = f"/users/me/api-keys/{body['id']}"
            assert (await client.delete(key_url, headers=other.headers)).status_code == 404
            assert (await client.delete(key_url, headers=account.headers)).status_code == 204
            assert (await client.get("/users/me", headers=with_key)).status_code == 401
            assert (await client.delete(key_url, headers=account.headers)).status_code == 404

            empty = await client.post(
                "/users/me/api-keys", json={"name": ""}, headers=other.headers
            )
            assert empty.status_code == 422

    asyncio.run(check())


def test_admin_command_grants_and_withdraws_rights(database_url: str) -> None:
    from api.admin import set_admin

    async def check() -> None:
        settings = db_app_settings(database_url)
        async with running_app(settings, inference=False) as (app, client):
            account = await make_account(app)
            assert await set_admin(settings, account.email.upper(), True)
            me = await client.get("/users/me", headers=account.headers)
            assert me.json()["is_admin"] is True
            assert await set_admin(settings, account.email, False)
            assert (await client.get("/users/me", headers=account.headers)).json()[
                "is_admin"
            ] is False
            assert not await set_admin(settings, "nobody@example.com", True)

    asyncio.run(check())
