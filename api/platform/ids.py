"""Row ids in paths and queries, bounded to the id columns' range.

The ids are ``INTEGER`` columns: 32-bit in PostgreSQL, 64-bit in SQLite. An id outside
``1..MAX_ID`` can name no row; unbounded, it reached the driver and failed there (a 500: SQLite
overflows past 2**63, PostgreSQL past 2**31). Bounded, it is a 422 like any invalid input.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ID = 2**31 - 1

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
