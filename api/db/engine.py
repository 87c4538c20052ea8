"""The database: one async engine per process (built in the lifespan) and a session per request.

``create_async_engine`` does not connect; the first query does. SQLite gets foreign keys turned
on for every connection (so ``ON DELETE CASCADE`` works), WAL journaling and a busy timeout so
concurrent writers wait for each other instead of failing.

A database that cannot be reached (down, restarting, connection dropped mid-query) becomes
:class:`~api.errors.DatabaseUnavailableError` (503 with ``Retry-After``) at the session's
boundary; the pool checks connections before use (``pool_pre_ping``), so it recovers by itself
once the database is back. Errors of the statements themselves (integrity, bad SQL) pass as they
are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from api.config import Settings
from api.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL (``None`` for other databases and in-memory SQLite)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _enable_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    path = sqlite_path(url)
    if url.get_backend_name() == "sqlite":
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=True,
    )


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_engine(settings)
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False))

    async def close(self) -> None:
        await self.engine.dispose()


# Statement errors: the request's or the code's fault, not the database's availability.
_STATEMENT_ERRORS = (exc.IntegrityError, exc.DataError, exc.ProgrammingError, exc.NotSupportedError)


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached right now."""
    if isinstance(error, exc.DBAPIError):
        return not isinstance(error, _STATEMENT_ERRORS)
    # asyncpg raises the socket's own errors when it cannot connect at all.
    return isinstance(error, (ConnectionError, TimeoutError, exc.TimeoutError))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the response is done."""
    database: Database = request.app.state.database
    async with database.sessions() as session:
        try:
            yield session
        except Exception as error:
            if is_unavailable(error):
                logger.warning("database unavailable: %r", error)
                detail = "the database is unavailable, retry shortly"
                raise DatabaseUnavailableError(detail) from error
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session)]
