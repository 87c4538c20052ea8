"""Real databases for the tests: a SQLite file per test, and PostgreSQL when
``TEST_DATABASE_URL`` is set (a fresh database per test session, emptied between tests)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api.config import Settings
from api.db import migrate
from api.db.engine import create_engine
from api.db.tables import Base

TEST_DATABASE_URL_VARIABLE = "TEST_DATABASE_URL"
DATABASE_KINDS = ("sqlite", "postgresql")


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def postgres_server_url() -> str:
    url = os.environ.get(TEST_DATABASE_URL_VARIABLE)
    if not url:
        pytest.skip(f"PostgreSQL tests need {TEST_DATABASE_URL_VARIABLE} (e.g. as .ci/run sets it)")
    return url


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``; dropped afterwards."""
    name = f"tritongate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def upgrade_to_head(url: str) -> None:
    await migrate.migrate_database(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]


async def empty_tables(url: str) -> None:
    engine = create_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


def copy_sqlite(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return sqlite_url(target)
