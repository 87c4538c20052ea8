"""``/users/me``, API keys and the admins' account management, on SQLite and PostgreSQL: only a
login session changes credentials (never an API key), with the current password; a new
password, signing out everywhere, an admin's revocation and deactivation end every token and
key; demotion deletes the admin-scope keys."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from api.accounts import security
from api.accounts.auth import SESSION_REQUIRED
from api.accounts.csrf import CSRF_HEADER
from api.db.tables import ApiKey
from tests.integration.accounts import (
    PASSWORD,
    issue_api_key,
    issue_token,
    make_account,
    unique_email,
)
from tests.integration.api_client import db_app_settings, running_app

NEW_PASSWORD = "a brand new password"


def test_read_and_update_me(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            other = await make_account(app)
            me = await client.get("/users/me", headers=account.headers)
            assert me.status_code == 200
            assert me.json()["email"] == account.email and me.json()["id"] == account.id

            taken = await client.patch(
                "/users/me",
                json={"email": other.email, "current_password": PASSWORD},
                headers=account.headers,
            )
            assert taken.status_code == 400 and taken.json() == {"detail": "Email already exists"}
            short = await client.patch(
                "/users/me",
                json={"password": "x", "current_password": PASSWORD},
                headers=account.headers,
            )
            assert short.status_code == 422

            email = unique_email("renamed")
            renamed = await client.patch(
                "/users/me",
                json={"email": email, "current_password": PASSWORD},
                headers=account.headers,
            )
            assert renamed.status_code == 200 and renamed.json()["email"] == email

            # A new password: this session goes on, the user's other sessions end.
            second = {"Authorization": f"Bearer {await issue_token(app, account.id, timedelta(1))}"}
            changed = await client.patch(
                "/users/me",
                json={"password": NEW_PASSWORD, "current_password": PASSWORD},
                headers=account.headers,
            )
            assert changed.status_code == 200
            assert (await client.get("/users/me", headers=account.headers)).status_code == 200
            assert (await client.get("/users/me", headers=second)).status_code == 401
            old = await client.post("/token", data={"username": email, "password": PASSWORD})
            assert old.status_code == 401
            new = await client.post("/token", data={"username": email, "password": NEW_PASSWORD})
            assert new.status_code == 200

    asyncio.run(check())


@pytest.mark.parametrize(
    "change",
    [{"password": NEW_PASSWORD}, {"email": "taken.over@example.com"}],
    ids=["password", "email"],
)
def test_changing_the_password_or_email_needs_the_current_password(
    database_url: str, change: dict[str, str]
) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            missing = await client.patch("/users/me", json=change, headers=account.headers)
            assert missing.status_code == 422, missing.text
            assert "current_password is required" in missing.text
            null = {**change, "current_password": None}
            assert (
                await client.patch("/users/me", json=null, headers=account.headers)
            ).status_code == 422
            wrong = await client.patch(
                "/users/me",
                json={**change, "current_password": "not the password"},
                headers=account.headers,
            )
            assert wrong.status_code == 403
            assert wrong.json() == {"detail": "Current password is incorrect"}

            # Nothing changed: same email, the old password still logs in.
            me = await client.get("/users/me", headers=account.headers)
            assert me.json()["email"] == account.email
            login = await client.post(
                "/token", data={"username": account.email, "password": PASSWORD}
            )
            assert login.status_code == 200
            # And with the right one it goes through.
            done = await client.patch(
                "/users/me", json={**change, "current_password": PASSWORD}, headers=account.headers
            )
            assert done.status_code == 200, done.text

    asyncio.run(check())


def test_wrong_current_passwords_are_rate_limited_with_the_accounts_logins(
    database_url: str, verified_passwords: list[tuple[str, str]]
) -> None:
    """A stolen session guessing the password: after the account's budget of failed attempts
    (here 3) the next guess is refused with 429 without being verified, even the right one,
    and the account's logins from a new address are locked the same way."""
    verified = verified_passwords

    async def check() -> None:
        settings = db_app_settings(database_url, login_max_attempts_per_account=3)
        async with running_app(settings, inference=False) as (app, client):
            account = await make_account(app)
            change = {"password": NEW_PASSWORD}
            statuses = []
            for guess in range(3):
                reply = await client.patch(
                    "/users/me",
                    json={**change, "current_password": f"guess number {guess}"},
                    headers=account.headers,
                )
                statuses.append(reply.status_code)
            assert statuses == [403, 403, 403]
            verified.clear()
            limited = await client.patch(
                "/users/me", json={**change, "current_password": PASSWORD}, headers=account.headers
            )
            assert limited.status_code == 429, limited.text
            assert 1 <= int(limited.headers["retry-after"]) <= 900
            assert "for this account" in limited.json()["detail"]
            login = await client.post(
                "/token", data={"username": account.email, "password": PASSWORD}
            )
            assert login.status_code == 429
            assert verified == [], "refused attempts never reach the password hash"
            print(
                f"\nwrong current passwords: {statuses}, then 429 Retry-After "
                f"{limited.headers['retry-after']} s (login too)"
            )

    asyncio.run(check())


def test_an_api_key_cannot_change_the_password_or_email(database_url: str) -> None:
    """The takeover of issue #15: a leaked everyday key changed the password (no current one
    needed), logged in with it and got a bearer with the user's full rights."""

    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app, admin=True)
            key = {"X-API-Key": await issue_api_key(app, account.id)}
            for change in (
                {"password": NEW_PASSWORD},
                {"password": NEW_PASSWORD, "current_password": PASSWORD},
                {"email": "attacker@example.com", "current_password": PASSWORD},
            ):
                reply = await client.patch("/users/me", json=change, headers=key)
                assert reply.status_code == 403, (change, reply.text)
                assert reply.json() == {"detail": SESSION_REQUIRED}
            taken_over = await client.post(
                "/token", data={"username": account.email, "password": NEW_PASSWORD}
            )
            assert taken_over.status_code == 401
            me = await client.get("/users/me", headers=account.headers)
            assert me.status_code == 200 and me.json()["email"] == account.email
            # The key itself still works for what it is for.
            assert (await client.get("/users/me", headers=key)).status_code == 200

    asyncio.run(check())


def test_an_api_key_cannot_create_or_delete_api_keys(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            admin = await make_account(app, admin=True, stem="admin")
            scoped = await client.post(
                "/users/me/api-keys", json={"name": "ops", "admin": True}, headers=admin.headers
            )
            assert scoped.status_code == 201, scoped.text
            everyday = {"X-API-Key": await issue_api_key(app, admin.id)}
            for key in (everyday, {"X-API-Key": scoped.json()["key"]}):
                for body in ({"name": "minted"}, {"name": "minted", "admin": True}):
                    made = await client.post("/users/me/api-keys", json=body, headers=key)
                    assert made.status_code == 403, made.text
                    assert made.json() == {"detail": SESSION_REQUIRED}
                url = f"/users/me/api-keys/{scoped.json()['id']}"
                deleted = await client.delete(url, headers=key)
                assert deleted.status_code == 403
                assert deleted.json() == {"detail": SESSION_REQUIRED}
                listed = await client.get("/users/me/api-keys", headers=key)  # reading is fine
                assert listed.status_code == 200
                assert [k["name"] for k in listed.json()] == ["ops", "tests"]

    asyncio.run(check())


def test_a_password_change_revokes_every_api_key_and_other_token(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            bystander = await make_account(app)
            keys = [{"X-API-Key": await issue_api_key(app, account.id, f"k{n}")} for n in (1, 2)]
            other = {"Authorization": f"Bearer {await issue_token(app, account.id, timedelta(1))}"}
            bystander_key = {"X-API-Key": await issue_api_key(app, bystander.id)}
            for headers in (*keys, other):
                assert (await client.get("/users/me", headers=headers)).status_code == 200

            changed = await client.patch(
                "/users/me",
                json={"password": NEW_PASSWORD, "current_password": PASSWORD},
                headers=account.headers,
            )
            assert changed.status_code == 200, changed.text
            for headers in (*keys, other):
                assert (await client.get("/users/me", headers=headers)).status_code == 401
            # The stolen key cannot change the password back either: it is gone.
            back = await client.patch(
                "/users/me",
                json={"password": PASSWORD, "current_password": NEW_PASSWORD},
                headers=keys[0],
            )
            assert back.status_code == 401
            assert (await client.get("/users/me/api-keys", headers=account.headers)).json() == []
            assert (await client.get("/users/me", headers=account.headers)).status_code == 200
            assert (await client.get("/users/me", headers=bystander_key)).status_code == 200

    asyncio.run(check())


def test_sign_out_everywhere_revokes_every_token_and_key(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            bystander = await make_account(app)
            key = {"X-API-Key": await issue_api_key(app, account.id)}
            other = {"Authorization": f"Bearer {await issue_token(app, account.id, timedelta(1))}"}
            refused = await client.delete("/users/me/tokens", headers=key)
            assert refused.status_code == 403 and refused.json() == {"detail": SESSION_REQUIRED}
            assert (await client.get("/users/me", headers=other)).status_code == 200

            done = await client.delete("/users/me/tokens", headers=account.headers)
            assert done.status_code == 204, done.text
            for headers in (account.headers, other, key):
                assert (await client.get("/users/me", headers=headers)).status_code == 401
            assert (await client.get("/users/me", headers=bystander.headers)).status_code == 200
            # The account itself is fine: logging in again works.
            login = await client.post(
                "/token", data={"username": account.email, "password": PASSWORD}
            )
            assert login.status_code == 200

            # By the login cookie (with the CSRF header): the cookie is cleared too.
            cookie_login = await client.post(
                "/login", data={"email": account.email, "password": PASSWORD}
            )
            assert cookie_login.status_code == 200, cookie_login.text
            csrf = {CSRF_HEADER: cookie_login.json()["csrf_token"]}
            assert (await client.delete("/users/me/tokens")).status_code == 403  # no CSRF header
            assert (await client.delete("/users/me/tokens", headers=csrf)).status_code == 204
            assert "token" not in client.cookies
            fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
            assert (await client.get("/users/me", headers=fresh)).status_code == 401

    asyncio.run(check())


def test_a_deactivated_users_token_and_key_are_refused_and_login_fails(
    database_url: str,
) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            admin = await make_account(app, admin=True, stem="admin")
            user = await make_account(app)
            key = {"X-API-Key": await issue_api_key(app, user.id)}
            url = f"/users/{user.id}"
            for headers in (user.headers, key):  # a user cannot (de)activate or promote anyone
                for body in ({"is_active": False}, {"is_admin": True}):
                    refused = await client.patch(url, json=body, headers=headers)
                    assert refused.status_code == 403
                    assert refused.json() == {"detail": "Admin rights required"}
            missing = await client.patch(
                "/users/999999", json={"is_active": False}, headers=admin.headers
            )
            assert missing.status_code == 404

            off = await client.patch(url, json={"is_active": False}, headers=admin.headers)
            assert off.status_code == 200, off.text
            assert off.json()["is_active"] is False and off.json()["id"] == user.id
            for headers in (user.headers, key):
                assert (await client.get("/users/me", headers=headers)).status_code == 401
            login = await client.post("/token", data={"username": user.email, "password": PASSWORD})
            assert login.status_code == 401

            # Reactivated: logging in works again, the old token and key stay revoked.
            on = await client.patch(url, json={"is_active": True}, headers=admin.headers)
            assert on.status_code == 200 and on.json()["is_active"] is True
            for headers in (user.headers, key):
                assert (await client.get("/users/me", headers=headers)).status_code == 401
            login = await client.post("/token", data={"username": user.email, "password": PASSWORD})
            assert login.status_code == 200

    asyncio.run(check())


def test_an_admin_cannot_deactivate_or_demote_themselves(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            admin = await make_account(app, admin=True, stem="admin")
            url = f"/users/{admin.id}"
            for body in ({"is_active": False}, {"is_admin": False}):
                reply = await client.patch(url, json=body, headers=admin.headers)
                assert reply.status_code == 400, reply.text
                assert reply.json() == {"detail": "You cannot deactivate or demote yourself"}
            me = await client.get("/users/me", headers=admin.headers)
            assert me.json()["is_active"] is True and me.json()["is_admin"] is True

    asyncio.run(check())


def test_an_admin_scope_key_cannot_make_or_unmake_admins(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            admin = await make_account(app, admin=True, stem="admin")
            accomplice = await make_account(app, stem="accomplice")
            scoped = await client.post(
                "/users/me/api-keys", json={"name": "ops", "admin": True}, headers=admin.headers
            )
            key = {"X-API-Key": scoped.json()["key"]}
            reply = await client.patch(
                f"/users/{accomplice.id}", json={"is_admin": True}, headers=key
            )
            assert reply.status_code == 403 and reply.json() == {"detail": SESSION_REQUIRED}
            me = await client.get("/users/me", headers=accomplice.headers)
            assert me.json()["is_admin"] is False
            # An admin's session can.
            promoted = await client.patch(
                f"/users/{accomplice.id}", json={"is_admin": True}, headers=admin.headers
            )
            assert promoted.status_code == 200 and promoted.json()["is_admin"] is True

    asyncio.run(check())


@pytest.mark.parametrize("how", ["http", "command"])
def test_demotion_deletes_admin_scope_keys_so_repromotion_revives_none(
    database_url: str, how: str
) -> None:
    from api.accounts.admin import set_admin

    async def check() -> None:
        settings = db_app_settings(database_url)
        async with running_app(settings, inference=False) as (app, client):
            other_admin = await make_account(app, admin=True, stem="admin")
            admin = await make_account(app, admin=True, stem="demoted")
            victim = await make_account(app)
            scoped = await client.post(
                "/users/me/api-keys", json={"name": "ops", "admin": True}, headers=admin.headers
            )
            assert scoped.status_code == 201, scoped.text
            scoped_key = {"X-API-Key": scoped.json()["key"]}
            everyday = {"X-API-Key": await issue_api_key(app, admin.id, "everyday")}
            admin_action = f"/users/{victim.id}/tokens"
            assert (await client.delete(admin_action, headers=scoped_key)).status_code == 204

            async def promote(is_admin: bool) -> None:
                if how == "command":
                    assert await set_admin(settings, admin.email, is_admin)
                    return
                reply = await client.patch(
                    f"/users/{admin.id}", json={"is_admin": is_admin}, headers=other_admin.headers
                )
                assert reply.status_code == 200 and reply.json()["is_admin"] is is_admin

            await promote(False)
            await promote(True)
            assert (await client.delete(admin_action, headers=scoped_key)).status_code == 401
            listed = await client.get("/users/me/api-keys", headers=admin.headers)
            assert [k["name"] for k in listed.json()] == ["everyday"]  # the everyday key stays
            assert (await client.get("/users/me", headers=everyday)).status_code == 200
            # The admin's own session has its rights back.
            assert (await client.delete(admin_action, headers=admin.headers)).status_code == 204

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
    from api.accounts.admin import set_admin

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
