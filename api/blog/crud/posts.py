"""Posts: newest first, comments eager-loaded where a post is shown with them.

A list reads no whole content: the database returns each post's first characters and the
content's length (``substr`` and ``length``, in characters on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from api.blog.schemas.posts import PostCreate
from api.db.tables import Post
from api.db.types import utcnow


async def create_post(session: AsyncSession, author_id: int, data: PostCreate) -> Post:
    post = Post(
        author_id=author_id,
        title=data.title,
        content=data.content,
        publication_date=data.publication_date or utcnow(),
        comments=[],
    )
    session.add(post)
    await session.commit()
    return post


@dataclass(frozen=True)
class PostExcerpt:
    """A post as a list shows it: the first ``excerpt_length`` characters of its content."""

    id: int
    author_id: int
    title: str
    publication_date: datetime
    excerpt: str
    content_length: int

    @property
    def truncated(self) -> bool:
        return self.content_length > len(self.excerpt)


async def list_posts(
    session: AsyncSession,
    *,
    skip: int,
    limit: int,
    excerpt_length: int,
    author_id: int | None = None,
) -> list[PostExcerpt]:
    statement = select(
        Post.id,
        Post.author_id,
        Post.title,
        Post.publication_date,
        func.substr(Post.content, 1, excerpt_length).label("excerpt"),
        func.length(Post.content).label("content_length"),
    ).order_by(Post.publication_date.desc(), Post.id.desc())
    if author_id is not None:
        statement = statement.where(Post.author_id == author_id)
    result = await session.execute(statement.offset(skip).limit(limit))
    return [PostExcerpt(**row._asdict()) for row in result]


async def get_post(session: AsyncSession, post_id: int) -> Post | None:
    """The post with its comments loaded."""
    result = await session.execute(
        select(Post).options(selectinload(Post.comments)).where(Post.id == post_id)
    )
    return result.scalar_one_or_none()


async def post_exists(session: AsyncSession, post_id: int) -> bool:
    result = await session.execute(select(Post.id).where(Post.id == post_id))
    return result.scalar_one_or_none() is not None


async def update_post(session: AsyncSession, post: Post, changes: dict[str, Any]) -> Post:
    for field, value in changes.items():
        setattr(post, field, value)
    await session.commit()
    return post


async def delete_post(session: AsyncSession, post: Post) -> None:
    """Delete the post; its comments go with it (ORM cascade and ON DELETE CASCADE)."""
    await session.delete(post)
    await session.commit()
