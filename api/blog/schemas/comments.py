"""Comments on posts (the book's ``CommentCreate`` / ``CommentRead``).

Content is capped at ``COMMENT_CONTENT_MAX_LENGTH`` characters (422 above); the publication date
is a :data:`api.platform.fields.PublicationDate` (clamped to the request time, 422 without a UTC
representation).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.platform.fields import PUBLICATION_DATE_DESCRIPTION, PublicationDate, StoredText

# About 1,500 words: far more than a comment needs, a hundredth of what a body may carry.
COMMENT_CONTENT_MAX_LENGTH = 10_000


class CommentCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"content": "Nice post!"}]})

    content: StoredText = Field(
        min_length=1,
        max_length=COMMENT_CONTENT_MAX_LENGTH,
        description=f"At most {COMMENT_CONTENT_MAX_LENGTH} characters.",
    )
    publication_date: PublicationDate | None = Field(
        default=None, description=PUBLICATION_DATE_DESCRIPTION
    )


class CommentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    post_id: int
    author_id: int
    content: str
    publication_date: datetime
