"""Path resources as dependencies: ``get_post_or_404`` (the book's) and its comment sibling,
plus their "owned" variants for edits (author or admin, else 403; see
``api/accounts/permissions.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.accounts.permissions import owned
from api.blog.crud import comments as comments_crud
from api.blog.crud import posts as posts_crud
from api.db.engine import SessionDep
from api.db.tables import Comment, Post
from api.errors import NotFoundError
from api.platform.ids import PathId


async def get_post_or_404(post_id: PathId, session: SessionDep) -> Post:
    post = await posts_crud.get_post(session, post_id)
    if post is None:
        raise NotFoundError(f"Post {post_id} not found")
    return post


async def existing_post_id(post_id: PathId, session: SessionDep) -> int:
    """The id of an existing post (without loading it), else 404."""
    if not await posts_crud.post_exists(session, post_id):
        raise NotFoundError(f"Post {post_id} not found")
    return post_id


async def get_comment_or_404(comment_id: PathId, session: SessionDep) -> Comment:
    comment = await comments_crud.get_comment(session, comment_id)
    if comment is None:
        raise NotFoundError(f"Comment {comment_id} not found")
    return comment


PostDep = Annotated[Post, Depends(get_post_or_404)]
ExistingPostId = Annotated[int, Depends(existing_post_id)]
OwnedPost = Annotated[Post, Depends(owned(get_post_or_404))]
OwnedComment = Annotated[Comment, Depends(owned(get_comment_or_404))]
