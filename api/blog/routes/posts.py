"""The blog: posts and their comments. Reading is public; writing needs a logged-in user, and
only a post's author (or an admin) may edit or delete it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.accounts.auth import CurrentUser
from api.blog.crud import comments as comments_crud
from api.blog.crud import posts as posts_crud
from api.blog.pagination import PageDep
from api.blog.resources import ExistingPostId, OwnedPost, PostDep
from api.blog.schemas.comments import CommentCreate, CommentRead
from api.blog.schemas.posts import (
    EXCERPT_LENGTH,
    PostCreate,
    PostPartialUpdate,
    PostRead,
    PostSummary,
)
from api.db.engine import SessionDep
from api.platform.ids import MAX_ID
from api.platform.responses import error_responses

router = APIRouter(prefix="/posts", tags=["posts"])

NOT_FOUND = (404, "No such post")
FORBIDDEN = (403, "Not the author or an admin (or a cookie write without the CSRF header)")


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 401, 403))
async def create_post(user: CurrentUser, body: PostCreate, session: SessionDep) -> PostRead:
    post = await posts_crud.create_post(session, user.id, body)
    return PostRead.model_validate(post)


@router.get("")
async def list_posts(
    page: PageDep,
    session: SessionDep,
    author_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this author's posts.")
    ] = None,
) -> list[PostSummary]:
    """Newest first, without comments; `limit` is capped at 100. Each post shows the start of
    its content as `excerpt`, with the whole `content_length` and whether the excerpt is
    `truncated`; `GET /posts/{post_id}` returns the whole content."""
    posts = await posts_crud.list_posts(
        session,
        skip=page.skip,
        limit=page.limit,
        excerpt_length=EXCERPT_LENGTH,
        author_id=author_id,
    )
    return [PostSummary.model_validate(post) for post in posts]


@router.get("/{post_id}", responses=error_responses(NOT_FOUND))
async def read_post(post: PostDep) -> PostRead:
    """One post with its comments."""
    return PostRead.model_validate(post)


@router.patch("/{post_id}", responses=error_responses(400, 401, FORBIDDEN, NOT_FOUND))
async def update_post(post: OwnedPost, body: PostPartialUpdate, session: SessionDep) -> PostRead:
    """Change only the fields sent."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    post = await posts_crud.update_post(session, post, changes)
    return PostRead.model_validate(post)


@router.delete(
    "/{post_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, FORBIDDEN, NOT_FOUND),
)
async def delete_post(post: OwnedPost, session: SessionDep) -> None:
    """Delete the post and its comments."""
    await posts_crud.delete_post(session, post)


@router.post(
    "/{post_id}/comments",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 403, NOT_FOUND),
)
async def create_comment(
    user: CurrentUser, post_id: ExistingPostId, body: CommentCreate, session: SessionDep
) -> CommentRead:
    comment = await comments_crud.create_comment(session, post_id, user.id, body)
    return CommentRead.model_validate(comment)


@router.get("/{post_id}/comments", responses=error_responses(NOT_FOUND))
async def list_comments(
    post_id: ExistingPostId, page: PageDep, session: SessionDep
) -> list[CommentRead]:
    """Oldest first; `limit` is capped at 100."""
    comments = await comments_crud.list_comments(session, post_id, skip=page.skip, limit=page.limit)
    return [CommentRead.model_validate(comment) for comment in comments]
