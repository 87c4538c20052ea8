"""Comments on posts, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

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
