"""Comments on posts, on SQLite and PostgreSQL; capped content, dates 422 without a UTC
representation and clamped to the request time when in the future."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from api.blog.schemas.comments import COMMENT_CONTENT_MAX_LENGTH
from tests.integration.accounts import make_account
from tests.integration.api_client import db_app_settings, running_app


def test_comment_create_list_and_delete(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            reader = await make_account(app)
            admin = await make_account(app, admin=True)
            post = (
                await client.post(
                    "/posts", json={"title": "t", "content": "c"}, headers=author.headers
                )
            ).json()
            comments_url = f"/posts/{post['id']}/comments"

            made = []
            for who, content in ((reader, "first"), (author, "second"), (reader, "third")):
                reply = await client.post(
                    comments_url, json={"content": content}, headers=who.headers
                )
                assert reply.status_code == 201, reply.text
                body = reply.json()
                assert body["post_id"] == post["id"] and body["author_id"] == who.id
                made.append(body)
            listed = (await client.get(comments_url)).json()
            assert [c["content"] for c in listed] == ["first", "second", "third"]
            assert (await client.get(comments_url, params={"skip": 2})).json() == [made[2]]
            shown = (await client.get(f"/posts/{post['id']}")).json()
            assert [c["id"] for c in shown["comments"]] == [c["id"] for c in made]

            assert (await client.get("/posts/999999/comments")).status_code == 404
            nowhere = await client.post(
                "/posts/999999/comments", json={"content": "x"}, headers=reader.headers
            )
            assert nowhere.status_code == 404
            empty = await client.post(comments_url, json={"content": ""}, headers=reader.headers)
            assert empty.status_code == 422

            first, second, third = (f"/comments/{c['id']}" for c in made)
            # Only the comment's author (or an admin) deletes it; the post's author is not enough.
            assert (await client.delete(first, headers=author.headers)).status_code == 403
            assert (await client.delete(second, headers=reader.headers)).status_code == 403
            assert (await client.delete(first, headers=reader.headers)).status_code == 204
            assert (await client.delete(third, headers=admin.headers)).status_code == 204
            assert (await client.delete(first, headers=reader.headers)).status_code == 404
            remaining = (await client.get(comments_url)).json()
            assert [c["content"] for c in remaining] == ["second"]

    asyncio.run(check())


def test_comment_content_over_its_cap_is_422(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            post = await client.post(
                "/posts", json={"title": "t", "content": "c"}, headers=author.headers
            )
            url = f"/posts/{post.json()['id']}/comments"
            longest = "x" * COMMENT_CONTENT_MAX_LENGTH
            made = await client.post(url, json={"content": longest}, headers=author.headers)
            assert made.status_code == 201 and made.json()["content"] == longest
            over = await client.post(url, json={"content": longest + "y"}, headers=author.headers)
            assert over.status_code == 422
            (issue,) = over.json()["detail"]
            assert issue["loc"] == ["body", "content"] and issue["type"] == "string_too_long"
            huge = "x" * (9 * 1024 * 1024)
            assert (
                await client.post(url, json={"content": huge}, headers=author.headers)
            ).status_code == 413

    asyncio.run(check())


def test_comment_dates_are_422_without_a_utc_representation_and_clamped_in_the_future(
    database_url: str,
) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            post = await client.post(
                "/posts", json={"title": "t", "content": "c"}, headers=author.headers
            )
            url = f"/posts/{post.json()['id']}/comments"
            for date in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
                reply = await client.post(
                    url, json={"content": "c", "publication_date": date}, headers=author.headers
                )
                assert reply.status_code == 422, (date, reply.status_code, reply.text)
                (issue,) = reply.json()["detail"]
                assert issue["loc"] == ["body", "publication_date"]
                assert "cannot be represented in UTC" in issue["msg"]
            before = datetime.now(UTC)
            future = await client.post(
                url,
                json={"content": "c", "publication_date": "9999-12-31T23:59:59+01:00"},
                headers=author.headers,
            )
            after = datetime.now(UTC)
            assert future.status_code == 201, future.text
            (stored,) = (await client.get(url)).json()
            assert stored["id"] == future.json()["id"]
            assert before <= datetime.fromisoformat(stored["publication_date"]) <= after

    asyncio.run(check())
