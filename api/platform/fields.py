"""Field types shared by the schemas.

``UtcDatetime``: any ISO 8601 datetime, naive taken as UTC, converted to UTC; one that has no
UTC representation (year 1 with a positive offset, year 9999 with a negative one) is a 422,
never an ``OverflowError``. ``PublicationDate``: the same, and a date after the time of the
request is clamped to it (no post pins itself to the top of the newest-first list).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # pydantic turns a ValueError into a 422
        raise ValueError(
            f"{value.isoformat()} cannot be represented in UTC "
            "(it falls outside the years 1 to 9999 there)"
        ) from exc


def _not_after_now(value: datetime) -> datetime:
    return min(value, datetime.now(UTC))


# A datetime in UTC; naive input is taken to be UTC already.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

# When a post or comment was published: in UTC, and never after the request.
PublicationDate = Annotated[UtcDatetime, AfterValidator(_not_after_now)]
PUBLICATION_DATE_DESCRIPTION = (
    "Defaults to now (UTC); naive values are taken as UTC. A date after the time of the request "
    "is clamped to it; any past date (from year 1) is kept. A date with no UTC representation "
    "(e.g. 0001-01-01T00:00:00+01:00) is a 422."
)

# Text stored in the database. PostgreSQL's text cannot hold NUL (U+0000): refused (422) on
# every database, rather than failing in the driver.
NO_NUL_PATTERN = r"^[^\x00]*$"
StoredText = Annotated[str, Field(pattern=NO_NUL_PATTERN)]
