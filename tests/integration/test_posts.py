"""The blog's posts, on SQLite and PostgreSQL: the book's endpoints and status codes, ownership,
pagination, and comments going with their post."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from api.models import Comment, Post
from tests.integration.accounts import make_account
from tests.integration.api_client import db_app_settings, running_app


def test_create_read_list_and_filter(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            ada = await make_account(app)
            bob = await make_account(app)
            created = await client.post(
                "/posts", json={"title": "First", "content": "Hello"}, headers=ada.headers
            )
            assert created.status_code == 201, created.text
            post = created.json()
            assert post["title"] == "First" and post["author_id"] == ada.id
            assert post["comments"] == []
            dated = await client.post(
                "/posts",
                json={"title": "Old", "content": "x", "publication_date": "2020-01-02T03:04:05"},
                headers=bob.headers,
            )
            assert dated.json()["publication_date"] == "2020-01-02T03:04:05Z"  # naive: UTC
            await client.post("/posts", json={"title": "Last", "content": "y"}, headers=bob.headers)

            one = await client.get(f"/posts/{post['id']}")
            assert one.status_code == 200 and one.json() == post
            assert (await client.get("/posts/999999")).status_code == 404

            listed = (await client.get("/posts")).json()
            assert [p["title"] for p in listed] == ["Last", "First", "Old"]  # newest first
            assert "comments" not in listed[0]
            by_bob = (await client.get("/posts", params={"author_id": bob.id})).json()
            assert [p["title"] for p in by_bob] == ["Last", "Old"]
            page = (await client.get("/posts", params={"skip": 1, "limit": 1})).json()
            assert [p["title"] for p in page] == ["First"]

            long_title = await client.post(
                "/posts", json={"title": "x" * 256, "content": "c"}, headers=ada.headers
            )
            assert long_title.status_code == 422
            for params in ({"skip": -1}, {"limit": -1}):
                assert (await client.get("/posts", params=params)).status_code == 422

    asyncio.run(check())


def test_limit_is_capped_at_100(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            start = datetime(2024, 1, 1, tzinfo=UTC)
            async with app.state.database.sessions() as session:
                session.add_all(
                    Post(
                        author_id=author.id,
                        title=f"post {i}",
                        content="c",
                        publication_date=start + timedelta(minutes=i),
                    )
                    for i in range(105)
                )
                await session.commit()
            reply = await client.get("/posts", params={"limit": 1000})
            assert reply.status_code == 200 and len(reply.json()) == 100
            assert reply.json()[0]["title"] == "post 104"
            assert len((await client.get("/posts")).json()) == 10  # the default

    asyncio.run(check())


def test_only_the_author_or_an_admin_edits_and_deletes(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            stranger = await make_account(app)
            admin = await make_account(app, admin=True)
            post = (
                await client.post(
                    "/posts", json={"title": "Mine", "content": "Text"}, headers=author.headers
                )
            ).json()
            url = f"/posts/{post['id']}"

            patched = await client.patch(url, json={"content": "Edited"}, headers=author.headers)
            assert patched.status_code == 200
            assert patched.json()["title"] == "Mine" and patched.json()["content"] == "Edited"
            ignored_null = await client.patch(url, json={"title": None}, headers=author.headers)
            assert ignored_null.status_code == 200 and ignored_null.json()["title"] == "Mine"

            forbidden = await client.patch(url, json={"title": "Hijack"}, headers=stranger.headers)
            assert forbidden.status_code == 403
            assert (await client.delete(url, headers=stranger.headers)).status_code == 403
            assert (await client.get(url)).json()["title"] == "Mine"

            by_admin = await client.patch(url, json={"title": "Moderated"}, headers=admin.headers)
            assert by_admin.status_code == 200 and by_admin.json()["title"] == "Moderated"

            missing = await client.patch(
                "/posts/999999", json={"title": "x"}, headers=author.headers
            )
            assert missing.status_code == 404
            assert (await client.delete("/posts/999999", headers=author.headers)).status_code == 404

            deleted = await client.delete(url, headers=author.headers)
            assert deleted.status_code == 204 and deleted.content == b""
            assert (await client.get(url)).status_code == 404

            other = (
                await client.post(
                    "/posts", json={"title": "B", "content": "b"}, headers=author.headers
                )
            ).json()
            assert (
                await client.delete(f"/posts/{other['id']}", headers=admin.headers)
            ).status_code == 204

    asyncio.run(check())


def test_deleting_a_post_deletes_its_comments(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            ids = []
            for _ in range(2):
                post = await client.post(
                    "/posts", json={"title": "t", "content": "c"}, headers=author.headers
                )
                ids.append(post.json()["id"])
                for n in range(3):
                    await client.post(
                        f"/posts/{ids[-1]}/comments",
                        json={"content": f"comment {n}"},
                        headers=author.headers,
                    )
            through_api, at_db_level = ids
            assert (
                await client.delete(f"/posts/{through_api}", headers=author.headers)
            ).status_code == 204
            async with app.state.database.sessions() as session:
                # The database cascades on its own (foreign keys are on for SQLite too).
                await session.execute(text("DELETE FROM posts WHERE id = :id"), {"id": at_db_level})
                await session.commit()
                left = await session.scalar(select(func.count()).select_from(Comment))
            assert left == 0

    asyncio.run(check())
