"""Concurrent writes through the API: no lost rows and no 500s, on SQLite (writers wait for
each other: WAL and a busy timeout) and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.integration.accounts import PASSWORD, make_account, unique_email
from tests.integration.api_client import db_app_settings, running_app

CONCURRENT_COMMENTS = 50


def test_concurrent_comments_on_one_post_all_land(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            post = await client.post(
                "/posts", json={"title": "busy", "content": "c"}, headers=author.headers
            )
            url = f"/posts/{post.json()['id']}/comments"
            replies = await asyncio.gather(
                *(
                    client.post(url, json={"content": f"comment {n}"}, headers=author.headers)
                    for n in range(CONCURRENT_COMMENTS)
                )
            )
            assert [r.status_code for r in replies] == [201] * CONCURRENT_COMMENTS
            listed = (await client.get(url, params={"limit": 100})).json()
            assert len(listed) == CONCURRENT_COMMENTS
            assert {c["content"] for c in listed} == {
                f"comment {n}" for n in range(CONCURRENT_COMMENTS)
            }

    asyncio.run(check())


def test_concurrent_registrations_of_one_email(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (_, client):
            body = {"email": unique_email("race"), "password": PASSWORD}
            replies = await asyncio.gather(*(client.post("/register", json=body) for _ in range(2)))
            assert sorted(r.status_code for r in replies) == [201, 400]
            refused = next(r for r in replies if r.status_code == 400)
            assert refused.json() == {"detail": "Email already exists"}

    asyncio.run(check())
