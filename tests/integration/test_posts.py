"""The blog's posts, on SQLite and PostgreSQL: the book's endpoints and status codes, ownership,
pagination, comments going with their post; capped content, excerpts in lists, and dates: 422
without a UTC representation, clamped to the request time when in the future."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select, text

from api.blog.schemas.posts import EXCERPT_LENGTH, POST_CONTENT_MAX_LENGTH
from api.db.tables import Comment, Post
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


# --- hostile content and dates (issue #15, finding 6 and 13) ----------------------------------

UNREPRESENTABLE_DATES = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")


def test_content_over_its_cap_is_422_and_a_body_over_the_body_cap_413(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            longest = "x" * POST_CONTENT_MAX_LENGTH
            made = await client.post(
                "/posts", json={"title": "t", "content": longest}, headers=author.headers
            )
            assert made.status_code == 201, made.text
            url = f"/posts/{made.json()['id']}"
            over = await client.post(
                "/posts", json={"title": "t", "content": longest + "y"}, headers=author.headers
            )
            assert over.status_code == 422
            (issue,) = over.json()["detail"]
            assert issue["loc"] == ["body", "content"] and issue["type"] == "string_too_long"
            patched = await client.patch(
                url, json={"content": longest + "y"}, headers=author.headers
            )
            assert patched.status_code == 422
            assert (await client.get(url)).json()["content"] == longest
            huge = await client.post(
                "/posts",
                json={"title": "t", "content": "x" * (9 * 1024 * 1024)},
                headers=author.headers,
            )
            assert huge.status_code == 413

    asyncio.run(check())


def test_a_list_shows_excerpts_and_stays_small_with_big_posts_stored(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            start = datetime(2024, 1, 1, tzinfo=UTC)
            big = "b" * (7 * 1024 * 1024)  # stored before the cap existed
            async with app.state.database.sessions() as session:
                session.add_all(
                    Post(
                        author_id=author.id,
                        title=f"big {i}",
                        content=big,
                        publication_date=start + timedelta(minutes=i),
                    )
                    for i in range(4)
                )
                await session.commit()
            emoji = "\N{GRINNING FACE}" * (EXCERPT_LENGTH + 100)  # 4 bytes each in UTF-8
            for title, content in (("emoji", emoji), ("short", "tiny"), ("cap", "c" * 100_000)):
                reply = await client.post(
                    "/posts", json={"title": title, "content": content}, headers=author.headers
                )
                assert reply.status_code == 201, reply.text

            statements: list[str] = []

            def record(*args: object) -> None:
                statements.append(str(args[2]))  # (connection, cursor, statement, ...)

            engine = app.state.database.engine.sync_engine
            event.listen(engine, "before_cursor_execute", record)
            try:
                listed = await client.get("/posts", params={"limit": 100})
            finally:
                event.remove(engine, "before_cursor_execute", record)
            assert listed.status_code == 200
            (query,) = [sql for sql in statements if "FROM posts" in sql]
            # The database sends the excerpt and the length, never a whole content.
            rest = query.replace("substr(posts.content", "").replace("length(posts.content", "")
            assert "posts.content" not in rest, query
            posts = {post["title"]: post for post in listed.json()}
            print(
                f"\nGET /posts with 4 posts of 7 MiB and one of 100k characters stored: "
                f"{len(listed.content)} bytes"
            )
            assert len(listed.content) < 8 * 1024
            assert all("content" not in post for post in posts.values())
            assert posts["big 3"]["excerpt"] == big[:EXCERPT_LENGTH]
            assert posts["big 3"]["content_length"] == len(big) and posts["big 3"]["truncated"]
            assert posts["emoji"]["excerpt"] == emoji[:EXCERPT_LENGTH]  # characters, not bytes
            assert posts["emoji"]["content_length"] == len(emoji)
            short = {k: v for k, v in posts["short"].items() if k != "publication_date"}
            assert short == {
                "id": short["id"],
                "author_id": author.id,
                "title": "short",
                "excerpt": "tiny",
                "content_length": 4,
                "truncated": False,
            }
            whole = await client.get(f"/posts/{posts['emoji']['id']}")
            assert whole.json()["content"] == emoji

    asyncio.run(check())


def test_dates_without_a_utc_representation_are_422_not_500(database_url: str) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            made = await client.post(
                "/posts", json={"title": "t", "content": "c"}, headers=author.headers
            )
            post = made.json()
            for date in UNREPRESENTABLE_DATES:
                reply = await client.post(
                    "/posts",
                    json={"title": "t", "content": "c", "publication_date": date},
                    headers=author.headers,
                )
                assert reply.status_code == 422, (date, reply.status_code, reply.text)
                (issue,) = reply.json()["detail"]
                assert issue["loc"] == ["body", "publication_date"]
                assert "cannot be represented in UTC" in issue["msg"]
                # The date is not a field of the partial update: ignored, and no 500.
                patched = await client.patch(
                    f"/posts/{post['id']}",
                    json={"title": "u", "publication_date": date},
                    headers=author.headers,
                )
                assert patched.status_code == 200
                assert patched.json()["publication_date"] == post["publication_date"]

    asyncio.run(check())


def test_a_future_date_is_clamped_to_the_request_time_and_year_1_is_kept(
    database_url: str,
) -> None:
    async def check() -> None:
        async with running_app(db_app_settings(database_url), inference=False) as (app, client):
            author = await make_account(app)
            before = datetime.now(UTC)
            future = await client.post(
                "/posts",
                json={"title": "future", "content": "c", "publication_date": "9999-12-31T23:59:59"},
                headers=author.headers,
            )
            after = datetime.now(UTC)
            assert future.status_code == 201, future.text
            dated = datetime.fromisoformat(future.json()["publication_date"])
            assert before <= dated <= after
            ancient = await client.post(
                "/posts",
                json={
                    "title": "ancient",
                    "content": "c",
                    "publication_date": "0001-01-01T00:30:00-01:00",
                },
                headers=author.headers,
            )
            assert ancient.status_code == 201, ancient.text
            assert ancient.json()["publication_date"] == "0001-01-01T01:30:00Z"
            await client.post(
                "/posts", json={"title": "later", "content": "c"}, headers=author.headers
            )
            stored = (await client.get(f"/posts/{future.json()['id']}")).json()
            assert datetime.fromisoformat(stored["publication_date"]) <= after
            listed = (await client.get("/posts")).json()
            assert [p["title"] for p in listed] == ["later", "future", "ancient"]

    asyncio.run(check())
