"""Comments on posts (the book's ``CommentCreate`` / ``CommentRead``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import StoredText, UtcDatetime


class CommentCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"content": "Nice post!"}]})

    content: StoredText = Field(min_length=1)
    publication_date: UtcDatetime | None = Field(
        default=None, description="Defaults to now (UTC); naive values are taken as UTC."
    )


class CommentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    post_id: int
    author_id: int
    content: str
    publication_date: datetime
