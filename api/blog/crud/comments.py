"""Comments: added to a post, listed oldest first, deleted one by one."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.blog.schemas.comments import CommentCreate
from api.db.tables import Comment
from api.db.types import utcnow


async def create_comment(
    session: AsyncSession, post_id: int, author_id: int, data: CommentCreate
) -> Comment:
    comment = Comment(
        post_id=post_id,
        author_id=author_id,
        content=data.content,
        publication_date=data.publication_date or utcnow(),
    )
    session.add(comment)
    await session.commit()
    return comment


async def list_comments(
    session: AsyncSession, post_id: int, *, skip: int, limit: int
) -> Sequence[Comment]:
    result = await session.execute(
        select(Comment)
        .where(Comment.post_id == post_id)
        .order_by(Comment.id)
        .offset(skip)
        .limit(limit)
    )
    return result.scalars().all()


async def get_comment(session: AsyncSession, comment_id: int) -> Comment | None:
    return await session.get(Comment, comment_id)


async def delete_comment(session: AsyncSession, comment: Comment) -> None:
    await session.delete(comment)
    await session.commit()
