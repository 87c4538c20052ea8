"""Posts: newest first, comments eager-loaded where a post is shown with them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from api.db_types import utcnow
from api.models import Post
from api.schemas.posts import PostCreate


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


async def list_posts(
    session: AsyncSession, *, skip: int, limit: int, author_id: int | None = None
) -> Sequence[Post]:
    statement = select(Post).order_by(Post.publication_date.desc(), Post.id.desc())
    if author_id is not None:
        statement = statement.where(Post.author_id == author_id)
    result = await session.execute(statement.offset(skip).limit(limit))
    return result.scalars().all()


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
