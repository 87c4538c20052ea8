"""Who may write: every write route of the real app, read from its route table (not from a
list kept here), refuses anonymous callers (401) and users acting on someone else's resources
(403 or 404); no user can see or revoke another's API keys. SQLite and PostgreSQL.

The only write routes open to anonymous callers are :data:`PUBLIC_WRITES`; a new write route
that answers an anonymous caller with anything but 401 fails
``test_every_write_route_refuses_anonymous_and_foreign_callers`` until it is protected (or,
by design, added there). A new write route with a path parameter needs the owner's resource
for that parameter in :func:`owned_resources`, else the same test fails and says so.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount, Route, WebSocketRoute

from api.accounts.auth import SESSION_REQUIRED, get_admin_principal
from tests.integration.accounts import Account, issue_api_key, issue_token, make_account
from tests.integration.api_client import app_settings, db_app_settings, running_app
from tests.integration.openapi_auth import refusals

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Public by design: creating an account and logging in.
PUBLIC_WRITES = frozenset({("POST", "/register"), ("POST", "/token"), ("POST", "/login")})
# Writes on someone else's resource by design: any user may comment on any post.
SHARED_WRITES = frozenset({("POST", "/posts/{post_id}/comments")})
# Mounted apps cannot be enumerated: only these read-only static directories may be mounted.
STATIC_MOUNTS = frozenset({"/assets"})
ROUTE_KINDS = (APIRoute, Route, APIWebSocketRoute, WebSocketRoute, Mount)
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/posts/{post_id}"): {"title": "taken over"},
    # Harmless when the admin sends it (later routes still need the owner active, not admin);
    # refused before the body matters for everyone else.
    ("PATCH", "/users/{user_id}"): {"is_active": True},
}
PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
HOUR = timedelta(hours=1)


def write_routes(app: FastAPI) -> dict[tuple[str, str], Any]:
    """``(METHOD, path)`` → route, for every write method of every route in the table."""
    found: dict[tuple[str, str], Any] = {}
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        assert isinstance(original, ROUTE_KINDS), f"unknown kind of route: {original!r}"
        if isinstance(original, Mount):
            assert route.path in STATIC_MOUNTS, f"{route.path}: a mount this test cannot see"
            assert isinstance(original.app, StaticFiles), route.path
            continue
        for method in (route.methods or set()) & WRITE_METHODS:
            found[(method, route.path)] = route
    return found


def needs_admin(route: Any) -> bool:
    """Whether the route's dependency tree includes the admin check."""
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is get_admin_principal:
            return True
        pending.extend(dependant.dependencies)
    return False


def parameters(path: str) -> list[str]:
    return PARAMETER.findall(path)


def fill(path: str, values: dict[str, int]) -> str:
    return PARAMETER.sub(lambda match: str(values[match.group(1)]), path)


async def owned_resources(client: httpx.AsyncClient, owner: Account) -> dict[str, int]:
    """A post, a comment and an API key of ``owner``, by the path parameter naming them."""
    post = await client.post(
        "/posts", json={"title": "mine", "content": "c"}, headers=owner.headers
    )
    assert post.status_code == 201, post.text
    post_id = post.json()["id"]
    comment = await client.post(
        f"/posts/{post_id}/comments", json={"content": "mine"}, headers=owner.headers
    )
    assert comment.status_code == 201, comment.text
    key = await client.post("/users/me/api-keys", json={"name": "mine"}, headers=owner.headers)
    assert key.status_code == 201, key.text
    return {
        "post_id": post_id,
        "comment_id": comment.json()["id"],
        "key_id": key.json()["id"],
        "user_id": owner.id,
    }


def test_every_write_route_refuses_anonymous_and_foreign_callers(
    exported_repository: Path, database_url: str
) -> None:
    async def check() -> None:
        settings = app_settings(
            exported_repository,
            inference_backend="onnxruntime",
            inference_auth="required",
            database_url=database_url,
        )
        async with running_app(settings) as (app, client):
            routes = write_routes(app)
            assert {("POST", "/prediction"), ("DELETE", "/cache")} <= set(routes)
            assert set(routes) >= PUBLIC_WRITES | SHARED_WRITES
            protected = set(routes) - PUBLIC_WRITES

            # Anonymous: 401 with WWW-Authenticate, every protected write route.
            assert await refusals(client, protected, expected=401) == {}

            owner = await make_account(app, stem="owner")
            intruder = await make_account(app, stem="intruder")
            admin = await make_account(app, admin=True, stem="admin")
            intruder_key = {"X-API-Key": await issue_api_key(app, intruder.id)}
            admin_unscoped_key = {"X-API-Key": await issue_api_key(app, admin.id)}

            checked: dict[tuple[str, str], list[int]] = {}
            for (method, path), route in sorted(routes.items()):
                names = parameters(path)
                admin_only = needs_admin(route)
                if (method, path) in PUBLIC_WRITES | SHARED_WRITES or not (names or admin_only):
                    continue  # public, shared by design, or acting on the caller's own data
                # Fresh resources (and a fresh token: some routes revoke them) for each route.
                owner = Account(owner.id, owner.email, await issue_token(app, owner.id, HOUR))
                values = await owned_resources(client, owner)
                missing = [name for name in names if name not in values]
                assert not missing, f"{method} {path}: add the owner's {missing} to this test"
                url = fill(path, values)
                body = BODIES.get((method, path))
                foreign = [intruder.headers, intruder_key]
                if admin_only:
                    foreign += [owner.headers, admin_unscoped_key]
                statuses = []
                for headers in foreign:
                    reply = await client.request(method, url, json=body, headers=headers)
                    statuses.append(reply.status_code)
                    expected = {403} if admin_only else {403, 404}
                    assert reply.status_code in expected, (method, path, reply.text)
                # Nothing changed: the owner's post, comment, key and token are all still there.
                await _assert_intact(client, owner, values)
                # And the route does work for whoever may use it (so the refusals were real).
                allowed = admin.headers if admin_only else owner.headers
                done = await client.request(method, url, json=body, headers=allowed)
                assert done.status_code in (200, 204), (method, path, done.text)
                checked[(method, path)] = statuses
            assert ("DELETE", "/cache") in checked and ("PATCH", "/posts/{post_id}") in checked
            anonymous = ", ".join(f"{m} {p}" for m, p in sorted(protected))
            print(
                f"\n{len(routes)} write routes; anonymous -> 401 on {len(protected)}: {anonymous}"
            )
            for (method, path), statuses in sorted(checked.items()):
                print(f"  foreign {method} {path}: {statuses}")

    asyncio.run(check())


async def _assert_intact(client: httpx.AsyncClient, owner: Account, values: dict[str, int]) -> None:
    post = await client.get(f"/posts/{values['post_id']}")
    assert post.status_code == 200 and post.json()["title"] == "mine"
    assert [c["id"] for c in post.json()["comments"]] == [values["comment_id"]]
    keys = await client.get("/users/me/api-keys", headers=owner.headers)
    assert keys.status_code == 200
    assert values["key_id"] in [key["id"] for key in keys.json()]


def test_no_user_can_see_or_revoke_anothers_api_keys(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            alice = await make_account(app, stem="alice")
            bob = await make_account(app, stem="bob")
            created = {}
            for account in (alice, bob):
                reply = await client.post(
                    "/users/me/api-keys", json={"name": account.email}, headers=account.headers
                )
                assert reply.status_code == 201, reply.text
                created[account.email] = reply.json()
            alice_key, bob_key = created[alice.email], created[bob.email]

            not_found = {"detail": f"API key {alice_key['id']} not found"}
            for headers, refusal in (
                (bob.headers, (404, not_found)),
                # An API key manages no keys at all, its owner's or anyone's.
                ({"X-API-Key": bob_key["key"]}, (403, {"detail": SESSION_REQUIRED})),
            ):
                listed = await client.get("/users/me/api-keys", headers=headers)
                assert listed.status_code == 200
                assert [key["id"] for key in listed.json()] == [bob_key["id"]]
                assert alice_key["prefix"] not in listed.text
                assert alice_key["key"] not in listed.text and bob_key["key"] not in listed.text
                refused = await client.delete(
                    f"/users/me/api-keys/{alice_key['id']}", headers=headers
                )
                assert (refused.status_code, refused.json()) == refusal

            # Alice's key is untouched and still authenticates as Alice.
            me = await client.get("/users/me", headers={"X-API-Key": alice_key["key"]})
            assert me.status_code == 200 and me.json()["id"] == alice.id
            mine = await client.get("/users/me/api-keys", headers=alice.headers)
            assert [key["id"] for key in mine.json()] == [alice_key["id"]]
            # Her own deletion works (so the 404s were about ownership) and ends the key.
            deleted = await client.delete(
                f"/users/me/api-keys/{alice_key['id']}", headers=alice.headers
            )
            assert deleted.status_code == 204
            gone = await client.get("/users/me", headers={"X-API-Key": alice_key["key"]})
            assert gone.status_code == 401
            still = await client.get("/users/me", headers={"X-API-Key": bob_key["key"]})
            assert still.status_code == 200 and still.json()["id"] == bob.id

    asyncio.run(check())
