"""The book's ``skip``/``limit`` pagination, with ``limit`` capped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from api.platform.ids import MAX_ID

MAX_LIMIT = 100
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class Page:
    skip: int
    limit: int


async def pagination(
    skip: Annotated[int, Query(ge=0, description="Items to skip.")] = 0,
    limit: Annotated[
        int, Query(ge=0, description=f"Items to return, at most {MAX_LIMIT}.")
    ] = DEFAULT_LIMIT,
) -> Page:
    """Negative values are refused (422); a limit over the maximum is capped, as in the book.
    A skip past the last possible row is capped too (the database rejects huge offsets)."""
    return Page(skip=min(MAX_ID, skip), limit=min(MAX_LIMIT, limit))


PageDep = Annotated[Page, Depends(pagination)]
