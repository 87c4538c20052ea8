"""Applying the Alembic migrations from code: at start-up, from ``tritongate serve`` and in tests.

Several processes may start at once (gunicorn workers), so every run holds a lock while it
migrates: a transaction-scoped advisory lock on PostgreSQL (the whole upgrade is one
transaction: PostgreSQL has transactional DDL) and an exclusive file lock beside the database
file on SQLite. The second process waits, then finds the schema at ``head`` and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from api.config import Settings
from api.db.engine import create_engine, sqlite_path

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock takes a bigint; any constant shared by every TritonGate process will do.
ADVISORY_LOCK_KEY = zlib.crc32(b"tritongate:migrations")


def alembic_config(database_url: str | None = None) -> Config:
    """A configuration pointing at ``api/db/migrations``; ``env.py`` uses ``database_url`` if given,
    else the settings' URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def _run(connection: Connection, direction: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate.lock"), "w") as handle:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


async def _locked_run(engine: AsyncEngine, direction: str, revision: str) -> None:
    if engine.dialect.name == "postgresql":
        async with engine.begin() as connection:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
            await connection.run_sync(_run, direction, revision)
        return
    path = sqlite_path(engine.url)
    lock = _file_lock(path) if path is not None else contextlib.nullcontext()
    async with lock, engine.begin() as connection:
        await connection.run_sync(_run, direction, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _locked_run(engine, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _locked_run(engine, "downgrade", revision)


async def migrate_database(settings: Settings) -> None:
    """Bring the configured database to ``head`` with a short-lived engine of its own."""
    engine = create_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    logger.info("database at the latest migration: %s", safe_url(settings.database_url))


def safe_url(database_url: str) -> str:
    """The URL without its password, for logs."""
    return make_url(database_url).render_as_string(hide_password=True)
