"""Field types shared by the schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A datetime in UTC; naive input is taken to be UTC already.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
