"""Registration, login (token and cookie), logout, revocation, CSRF and the 401s of every
protected route, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api import security
from api.csrf import CSRF_COOKIE, CSRF_HEADER
from api.models import AccessToken
from tests.integration.accounts import (
    PASSWORD,
    issue_token,
    make_account,
    unique_email,
)
from tests.integration.api_client import db_app_settings, running_app
from tests.integration.openapi_auth import operations, refusals

PUBLIC_OPERATIONS = {
    ("GET", "/health/live"),
    ("POST", "/register"),
    ("POST", "/token"),
    ("POST", "/login"),
    ("GET", "/csrf"),
    ("GET", "/posts"),
    ("GET", "/posts/{post_id}"),
    ("GET", "/posts/{post_id}/comments"),
}


def run(check: Callable[[], Any]) -> None:
    asyncio.run(check())


def test_register_and_duplicate_email(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (_, client):
            email = unique_email()
            created = await client.post("/register", json={"email": email, "password": PASSWORD})
            assert created.status_code == 201, created.text
            body = created.json()
            assert body["email"] == email and body["is_active"] and not body["is_admin"]
            assert "password" not in created.text and "hashed" not in created.text
            again = await client.post(
                "/register", json={"email": email.upper(), "password": PASSWORD}
            )
            assert again.status_code == 400
            assert again.json() == {"detail": "Email already exists"}

    run(check)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "short@example.com", "password": "1234567"},
        {"email": "long@example.com", "password": "x" * 257},
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "missing@example.com"},
    ],
    ids=["password-too-short", "password-too-long", "bad-email", "no-password"],
)
def test_register_rejects_invalid_input(tmp_path, body: dict[str, str]) -> None:
    async def check() -> None:
        settings = db_app_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
        async with running_app(settings, inference=False) as (_, client):
            assert (await client.post("/register", json=body)).status_code == 422

    run(check)


def test_token_login_and_bad_credentials(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real_verify = security.verify_password

    def spy(password: str, hashed: str) -> security.PasswordCheck:
        verified.append(hashed)
        return real_verify(password, hashed)

    monkeypatch.setattr(security, "verify_password", spy)

    async def check() -> None:
        settings = db_app_settings(database_url, access_token_expire_s=120)
        async with running_app(settings, inference=False) as (app, client):
            email = unique_email()
            await client.post("/register", json={"email": email, "password": PASSWORD})
            reply = await client.post("/token", data={"username": email, "password": PASSWORD})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["token_type"] == "bearer" and body["expires_in"] == 120
            token = body["access_token"]
            me = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200 and me.json()["email"] == email

            # Stored hashed, never as issued; the configured lifetime.
            async with app.state.database.sessions() as session:
                rows = (await session.execute(select(AccessToken))).scalars().all()
            assert len(rows) == 1
            assert rows[0].token_hash != token
            assert rows[0].token_hash == security.hash_secret(token)
            lifetime = rows[0].expires_at - rows[0].created_at
            assert lifetime == timedelta(seconds=120)
            assert rows[0].expires_at > datetime.now(UTC)

            # Unknown user and wrong password: both 401, both run the password hash.
            verified.clear()
            unknown = await client.post(
                "/token", data={"username": unique_email("nobody"), "password": PASSWORD}
            )
            wrong = await client.post("/token", data={"username": email, "password": "wrong pw"})
            for reply in (unknown, wrong):
                assert reply.status_code == 401
                assert reply.json() == {"detail": "Incorrect email or password"}
                assert reply.headers["www-authenticate"] == "Bearer"
            assert len(verified) == 2
            assert verified[0] == security.dummy_password_hash()
            assert verified[1] != verified[0] and verified[1].startswith("$argon2id$")

    run(check)


def test_every_protected_route_refuses_missing_expired_and_revoked_tokens(
    database_url: str,
) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            schema = (await client.get("/openapi.json")).json()
            assert operations(schema, protected=False) == PUBLIC_OPERATIONS
            protected = operations(schema, protected=True)
            assert ("POST", "/posts") in protected and ("DELETE", "/comments/{comment_id}") in (
                protected
            )
            account = await make_account(app)
            expired = await issue_token(app, account.id, timedelta(seconds=-1))
            revoked = await issue_token(app, account.id, timedelta(hours=1))
            bearer = {"Authorization": f"Bearer {revoked}"}
            assert (await client.post("/logout", headers=bearer)).status_code == 204

            assert await refusals(client, protected, expected=401) == {}
            for token in (expired, revoked, "not-a-token"):
                headers = {"Authorization": f"Bearer {token}"}
                assert await refusals(client, protected, expected=401, headers=headers) == {}
            bad_key = {"X-API-Key": "tg_not-a-key"}
            assert await refusals(client, protected, expected=401, headers=bad_key) == {}
            # The valid token still works: the refusals were about the credentials.
            assert (await client.get("/users/me", headers=account.headers)).status_code == 200

    run(check)


def test_logout_revokes_the_token(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            other = await issue_token(app, account.id, timedelta(hours=1))
            assert (await client.post("/logout", headers=account.headers)).status_code == 204
            assert (await client.get("/users/me", headers=account.headers)).status_code == 401
            # Only that token: another session of the same user goes on.
            headers = {"Authorization": f"Bearer {other}"}
            assert (await client.get("/users/me", headers=headers)).status_code == 200

    run(check)


def test_admin_revokes_a_users_tokens(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            admin = await make_account(app, admin=True, stem="admin")
            user = await make_account(app)
            second = {"Authorization": f"Bearer {await issue_token(app, user.id, timedelta(1))}"}
            url = f"/users/{user.id}/tokens"
            assert (await client.delete(url, headers=user.headers)).status_code == 403
            assert (await client.delete(url, headers=admin.headers)).status_code == 204
            for headers in (user.headers, second):
                assert (await client.get("/users/me", headers=headers)).status_code == 401
            assert (await client.get("/users/me", headers=admin.headers)).status_code == 200
            missing = await client.delete("/users/999999/tokens", headers=admin.headers)
            assert missing.status_code == 404

    run(check)


def test_cookie_login_with_csrf_double_submit(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            bad = await client.post("/login", data={"email": account.email, "password": "nope"})
            assert bad.status_code == 401
            reply = await client.post("/login", data={"email": account.email, "password": PASSWORD})
            assert reply.status_code == 200, reply.text
            cookies = {c.split("=", 1)[0]: c for c in reply.headers.get_list("set-cookie")}
            token_cookie = cookies["token"].lower()
            assert "httponly" in token_cookie and "samesite=lax" in token_cookie
            assert "secure" not in token_cookie  # plain HTTP here
            assert "httponly" not in cookies[CSRF_COOKIE].lower()  # the page reads it
            csrf = reply.json()["csrf_token"]
            assert client.cookies[CSRF_COOKIE] == csrf

            assert (await client.get("/users/me")).status_code == 200  # reads need no header
            post = {"title": "cookie", "content": "post"}
            missing = await client.post("/posts", json=post)
            assert missing.status_code == 403
            assert missing.json() == {"detail": "CSRF token missing or invalid"}
            wrong = await client.post("/posts", json=post, headers={CSRF_HEADER: csrf + "x"})
            assert wrong.status_code == 403
            ok = await client.post("/posts", json=post, headers={CSRF_HEADER: csrf})
            assert ok.status_code == 201, ok.text

            # A made-up value planted in both the cookie and the header is refused too.
            planted = {"token": client.cookies["token"], CSRF_COOKIE: "forged.value"}
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=client.base_url, cookies=planted
            ) as forger:
                forged = await forger.post(
                    "/posts", json=post, headers={CSRF_HEADER: "forged.value"}
                )
            assert forged.status_code == 403
            # GET /csrf hands out a fresh valid value.
            fresh = await client.get("/csrf")
            assert fresh.status_code == 200
            value = fresh.json()["csrf_token"]
            assert client.cookies[CSRF_COOKIE] == value
            assert (
                await client.post("/posts", json=post, headers={CSRF_HEADER: value})
            ).status_code == 201

            # Logging out by cookie also needs the header, then clears the cookie.
            assert (await client.post("/logout")).status_code == 403
            out = await client.post("/logout", headers={CSRF_HEADER: value})
            assert out.status_code == 204
            assert "token" not in client.cookies
            assert (await client.get("/users/me")).status_code == 401

    run(check)


def test_cookie_is_secure_over_https(tmp_path) -> None:
    async def check() -> None:
        settings = db_app_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
        async with running_app(settings, inference=False, base_url="https://tritongate") as (
            app,
            client,
        ):
            account = await make_account(app)
            reply = await client.post("/login", data={"email": account.email, "password": PASSWORD})
            assert reply.status_code == 200
            for cookie in reply.headers.get_list("set-cookie"):
                assert "secure" in cookie.lower(), cookie

    run(check)


def test_bearer_writes_need_no_csrf_header(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            account = await make_account(app)
            reply = await client.post(
                "/posts", json={"title": "t", "content": "c"}, headers=account.headers
            )
            assert reply.status_code == 201

    run(check)


def test_cors_allows_only_configured_origins(tmp_path) -> None:
    async def check() -> None:
        settings = db_app_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            cors_origins=["http://localhost:9000"],
        )
        async with running_app(settings, inference=False) as (_, client):
            preflight = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-csrf-token",
            }
            allowed = await client.options(
                "/posts", headers={"Origin": "http://localhost:9000", **preflight}
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "http://localhost:9000"
            assert allowed.headers["access-control-allow-credentials"] == "true"
            refused = await client.options(
                "/posts", headers={"Origin": "http://evil.example", **preflight}
            )
            assert "access-control-allow-origin" not in refused.headers

    run(check)
