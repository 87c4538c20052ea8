"""Comments by id: only a comment's author (or an admin) may delete it."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.blog.crud import comments as comments_crud
from api.blog.resources import OwnedComment
from api.db.engine import SessionDep
from api.platform.responses import error_responses

router = APIRouter(prefix="/comments", tags=["posts"])


@router.delete(
    "/{comment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        401,
        (403, "Not the author or an admin (or a cookie write without the CSRF header)"),
        (404, "No such comment"),
    ),
)
async def delete_comment(comment: OwnedComment, session: SessionDep) -> None:
    await comments_crud.delete_comment(session, comment)
