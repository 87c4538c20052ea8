"""Field types shared by the schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A datetime in UTC; naive input is taken to be UTC already.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

# Text stored in the database. PostgreSQL's text cannot hold NUL (U+0000): refused (422) on
# every database, rather than failing in the driver.
NO_NUL_PATTERN = r"^[^\x00]*$"
StoredText = Annotated[str, Field(pattern=NO_NUL_PATTERN)]
