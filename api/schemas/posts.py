"""Posts (the book's chapters 3 to 6): ``PostBase``, ``PostCreate``, ``PostRead``, updates."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.models import TITLE_MAX_LENGTH
from api.schemas.comments import CommentRead
from api.schemas.common import StoredText, UtcDatetime

Title = Field(min_length=1, max_length=TITLE_MAX_LENGTH)


class PostBase(BaseModel):
    title: StoredText = Title
    content: StoredText


class PostCreate(PostBase):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"title": "Hello", "content": "My first post."}]}
    )

    publication_date: UtcDatetime | None = Field(
        default=None, description="Defaults to now (UTC); naive values are taken as UTC."
    )


class PostPartialUpdate(BaseModel):
    """``PATCH /posts/{id}``: only the fields sent change (null leaves a field as it is)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"title": "Hello again"}]})

    title: StoredText | None = Field(default=None, min_length=1, max_length=TITLE_MAX_LENGTH)
    content: StoredText | None = None


class PostSummary(PostBase):
    """A post in a list: without its comments."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    publication_date: datetime


class PostRead(PostSummary):
    """One post with its comments, oldest first."""

    comments: list[CommentRead]
