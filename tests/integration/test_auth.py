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

from api.accounts import security
from api.accounts.csrf import CSRF_COOKIE, CSRF_HEADER
from api.db.tables import AccessToken
from tests.integration.accounts import (
    PASSWORD,
    issue_api_key,
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
    database_url: str, verified_passwords: list[tuple[str, str]]
) -> None:
    verified = verified_passwords

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
            hashes = [hashed for _, hashed in verified]
            assert hashes[0] == security.dummy_password_hash()
            assert hashes[1] != hashes[0] and hashes[1].startswith("$argon2id$")

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


def test_admin_revokes_every_token_and_api_key_of_a_user(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            admin = await make_account(app, admin=True, stem="admin")
            user = await make_account(app)
            second = {"Authorization": f"Bearer {await issue_token(app, user.id, timedelta(1))}"}
            key = {"X-API-Key": await issue_api_key(app, user.id)}
            admin_key = {"X-API-Key": await issue_api_key(app, admin.id)}
            url = f"/users/{user.id}/tokens"
            assert (await client.delete(url, headers=user.headers)).status_code == 403
            assert (await client.delete(url, headers=key)).status_code == 403
            assert (await client.delete(url, headers=admin.headers)).status_code == 204
            for headers in (user.headers, second, key):
                assert (await client.get("/users/me", headers=headers)).status_code == 401
            # The revoked key cannot undo anything (it was the way back in before).
            back = await client.patch(
                "/users/me",
                json={"password": "an attackers password", "current_password": PASSWORD},
                headers=key,
            )
            assert back.status_code == 401
            for headers in (admin.headers, admin_key):
                assert (await client.get("/users/me", headers=headers)).status_code == 200
            # Not a deactivation: the user can log in again.
            login = await client.post("/token", data={"username": user.email, "password": PASSWORD})
            assert login.status_code == 200
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


# --- The CSRF token bound to the session, same-site checks, cookie names (issue #15, #9) ---

NEW_POST = {"title": "cookie", "content": "post"}
SAME_ORIGIN = {"Origin": "http://tritongate", "Sec-Fetch-Site": "same-origin"}
CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "null"},
    {"Origin": "http://tritongate:8080"},
]
CROSS_SITE_IDS = ["origin", "origin-and-fetch-site", "fetch-site", "null-origin", "other-port"]


def _browser(
    app: Any, cookies: dict[str, str] | None = None, base_url: str = "http://tritongate"
) -> httpx.AsyncClient:
    """A client with its own cookie jar (one browser), optionally with planted cookies."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=base_url, cookies=cookies)


async def _cookie_login(client: httpx.AsyncClient, email: str, **kwargs: Any) -> str:
    reply = await client.post("/login", data={"email": email, "password": PASSWORD}, **kwargs)
    assert reply.status_code == 200, reply.text
    csrf: str = reply.json()["csrf_token"]
    return csrf


async def _write(app: Any, session: str, csrf_cookie: str, csrf_header: str) -> httpx.Response:
    """A post written with the login cookie ``session`` and the given CSRF cookie and header."""
    async with _browser(app, {"token": session, CSRF_COOKIE: csrf_cookie}) as client:
        return await client.post("/posts", json=NEW_POST, headers={CSRF_HEADER: csrf_header})


def test_a_csrf_token_from_another_session_or_an_anonymous_one_is_refused(
    database_url: str,
) -> None:
    """An attacker's own valid token (from their session, or from an anonymous GET /csrf),
    planted as the victim's CSRF cookie and sent in the header, does not authorise the
    victim's session; the victim's own token does."""

    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, _):
            victim, attacker = await make_account(app), await make_account(app)
            async with _browser(app) as victim_browser, _browser(app) as attacker_browser:
                victim_csrf = await _cookie_login(victim_browser, victim.email)
                attacker_csrf = await _cookie_login(attacker_browser, attacker.email)
                anonymous = await attacker_browser.get("/csrf")  # still the attacker's session
                async with _browser(app) as stranger:
                    anonymous_csrf = (await stranger.get("/csrf")).json()["csrf_token"]
                session = victim_browser.cookies["token"]
                for planted in (attacker_csrf, anonymous_csrf):
                    refused = await _write(app, session, planted, planted)
                    assert refused.status_code == 403, planted
                    assert refused.json() == {"detail": "CSRF token missing or invalid"}
                assert anonymous.json()["csrf_token"] == attacker_csrf  # bound, so stable
                accepted = await _write(app, session, victim_csrf, victim_csrf)
                assert accepted.status_code == 201, accepted.text
                own = {CSRF_HEADER: attacker_csrf}
                mine = await attacker_browser.post("/posts", json=NEW_POST, headers=own)
                assert mine.status_code == 201

    run(check)


def test_the_csrf_token_rotates_at_login(database_url: str) -> None:
    """A token obtained before login (which an attacker could have planted) is replaced at
    login and refused after it; each login (a new session) gets a new token."""

    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, _):
            account = await make_account(app)
            async with _browser(app) as browser:
                before = (await browser.get("/csrf")).json()["csrf_token"]
                first = await _cookie_login(browser, account.email)
                assert first != before and browser.cookies[CSRF_COOKIE] == first
                first_session = browser.cookies["token"]
                assert (await _write(app, first_session, before, before)).status_code == 403
                assert (await browser.get("/csrf")).json()["csrf_token"] == first
                second = await _cookie_login(browser, account.email)
                second_session = browser.cookies["token"]
                assert second not in (first, before) and second_session != first_session
                assert (await _write(app, second_session, first, first)).status_code == 403
                assert (await _write(app, second_session, second, second)).status_code == 201
                assert (await _write(app, first_session, first, first)).status_code == 201

    run(check)


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_SITE_IDS)
def test_cross_site_logins_and_cookie_writes_are_refused(tmp_path, headers: dict[str, str]) -> None:
    """A cross-site /login is refused before the password is checked (no cookie set), as is a
    cross-site write with the login cookie even with a valid CSRF token; same-origin requests,
    the configured CORS origins, requests without those headers (programs) and bearer-token
    writes pass."""

    async def check() -> None:
        settings = db_app_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", cors_origins=["https://app.example"]
        )
        async with running_app(settings, inference=False) as (app, _):
            account = await make_account(app)
            async with _browser(app) as browser:
                body = {"email": account.email, "password": PASSWORD}
                refused = await browser.post("/login", data=body, headers=headers)
                assert refused.status_code == 403, refused.text
                assert refused.json()["detail"].startswith("Cross-site request refused")
                assert "set-cookie" not in refused.headers and "token" not in browser.cookies

                csrf = await _cookie_login(browser, account.email, headers=SAME_ORIGIN)
                write = {CSRF_HEADER: csrf}
                cross = await browser.post("/posts", json=NEW_POST, headers={**write, **headers})
                assert cross.status_code == 403, cross.text
                assert cross.json()["detail"].startswith("Cross-site request refused")
                logout = await browser.post("/logout", headers={**write, **headers})
                assert logout.status_code == 403
                for allowed in (SAME_ORIGIN, {"Origin": "https://app.example"}, {}):
                    reply = await browser.post(
                        "/posts", json=NEW_POST, headers={**write, **allowed}
                    )
                    assert reply.status_code == 201, (allowed, reply.text)
                bearer = {**account.headers, **headers}
                assert (await browser.get("/users/me", headers=headers)).status_code == 200
            async with _browser(app) as program:
                assert (
                    await program.post("/posts", json=NEW_POST, headers=bearer)
                ).status_code == 201
                await _cookie_login(program, account.email)  # no Origin: not a browser

    run(check)


def test_cookies_are_host_prefixed_over_https_and_read_under_that_name_only(tmp_path) -> None:
    async def check() -> None:
        settings = db_app_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
        async with running_app(settings, inference=False) as (app, _):
            account = await make_account(app)
            async with _browser(app, base_url="https://tritongate") as browser:
                reply = await browser.post(
                    "/login", data={"email": account.email, "password": PASSWORD}
                )
                assert reply.status_code == 200, reply.text
                set_cookies = {
                    c.split("=", 1)[0]: c.lower() for c in reply.headers.get_list("set-cookie")
                }
                assert set(set_cookies) == {"__Host-token", "__Host-csrftoken"}
                for cookie in set_cookies.values():
                    assert "; secure" in cookie and "; path=/" in cookie
                    assert "domain=" not in cookie and "samesite=lax" in cookie
                assert "httponly" in set_cookies["__Host-token"]
                assert "httponly" not in set_cookies["__Host-csrftoken"]
                csrf = reply.json()["csrf_token"]
                assert browser.cookies["__Host-csrftoken"] == csrf
                session = browser.cookies["__Host-token"]
                assert (await browser.get("/users/me")).status_code == 200
                write = await browser.post("/posts", json=NEW_POST, headers={CSRF_HEADER: csrf})
                assert write.status_code == 201, write.text
                assert (await browser.get("/csrf")).json()["csrf_token"] == csrf

            # Under the other scheme's name, the cookie is not read.
            async with _browser(app, {"token": session}, "https://tritongate") as plain:
                assert (await plain.get("/users/me")).status_code == 401
            async with _browser(app, {"__Host-token": session}) as over_http:
                assert (await over_http.get("/users/me")).status_code == 401
            async with _browser(app, {"token": session}) as over_http:
                assert (await over_http.get("/users/me")).status_code == 200

            async with _browser(
                app, {"__Host-token": session, "__Host-csrftoken": csrf}, "https://tritongate"
            ) as browser:
                out = await browser.post("/logout", headers={CSRF_HEADER: csrf})
                assert out.status_code == 204
                cleared = {
                    c.split("=", 1)[0]: c.lower() for c in out.headers.get_list("set-cookie")
                }
                assert set(cleared) == {"__Host-token", "__Host-csrftoken"}
                assert all("; secure" in c and "max-age=0" in c for c in cleared.values())

    run(check)


def test_openapi_declares_both_cookie_names(tmp_path) -> None:
    async def check() -> None:
        settings = db_app_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
        async with running_app(settings, inference=False) as (_, client):
            schema = (await client.get("/openapi.json")).json()
        schemes = schema["components"]["securitySchemes"]
        assert schemes["TokenCookie"] == {**schemes["TokenCookie"], "in": "cookie", "name": "token"}
        assert schemes["HostTokenCookie"]["in"] == "cookie"
        assert schemes["HostTokenCookie"]["name"] == "__Host-token"
        me = schema["paths"]["/users/me"]["get"]["security"]
        assert {"TokenCookie": []} in me and {"HostTokenCookie": []} in me
        for path, method, status in (
            ("/register", "post", "429"),
            ("/register", "post", "503"),
            ("/login", "post", "403"),
            ("/login", "post", "503"),
            ("/token", "post", "503"),
        ):
            assert status in schema["paths"][path][method]["responses"], (path, status)

    run(check)
