"""Posts (the book's chapters 3 to 6): ``PostBase``, ``PostCreate``, ``PostRead``, updates.

Content is capped at ``POST_CONTENT_MAX_LENGTH`` characters (422 above) on create and update.
A list shows each post as a ``PostSummary``: its first ``EXCERPT_LENGTH`` characters and the
whole content's length instead of the content (the book lists ``PostRead``s; its ``Post`` has
an ``excerpt()`` too), so a page of 100 posts stays small; ``GET /posts/{id}`` has it all.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.blog.schemas.comments import CommentRead
from api.db.tables import TITLE_MAX_LENGTH
from api.platform.fields import PUBLICATION_DATE_DESCRIPTION, PublicationDate, StoredText

# About 15,000 words: a long blog post is well under it; 100 KB to 400 KB of UTF-8.
POST_CONTENT_MAX_LENGTH = 100_000
# Characters of content a list shows per post (the book's excerpt() shows 140).
EXCERPT_LENGTH = 300

Title = Field(min_length=1, max_length=TITLE_MAX_LENGTH)
CONTENT_DESCRIPTION = f"At most {POST_CONTENT_MAX_LENGTH} characters."


class PostBase(BaseModel):
    title: StoredText = Title
    content: StoredText = Field(max_length=POST_CONTENT_MAX_LENGTH, description=CONTENT_DESCRIPTION)


class PostCreate(PostBase):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"title": "Hello", "content": "My first post."}]}
    )

    publication_date: PublicationDate | None = Field(
        default=None, description=PUBLICATION_DATE_DESCRIPTION
    )


class PostPartialUpdate(BaseModel):
    """``PATCH /posts/{id}``: only the fields sent change (null leaves a field as it is). The
    publication date cannot be changed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"title": "Hello again"}]})

    title: StoredText | None = Field(default=None, min_length=1, max_length=TITLE_MAX_LENGTH)
    content: StoredText | None = Field(
        default=None, max_length=POST_CONTENT_MAX_LENGTH, description=CONTENT_DESCRIPTION
    )


class PostSummary(BaseModel):
    """A post in a list: an excerpt of its content, without its comments."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    title: str
    publication_date: datetime
    excerpt: str = Field(
        description=f"The content's first {EXCERPT_LENGTH} characters (all of it if shorter); "
        "`GET /posts/{id}` returns the whole content."
    )
    content_length: int = Field(description="The whole content's length, in characters.")
    truncated: bool = Field(
        description="Whether the excerpt is cut, i.e. `content_length` is over its length."
    )


class PostRead(BaseModel):
    """One post, all of its content, with its comments oldest first."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    title: str
    content: str
    publication_date: datetime
    comments: list[CommentRead]
