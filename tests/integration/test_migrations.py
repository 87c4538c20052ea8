"""Alembic migrations on fresh SQLite and PostgreSQL databases: up, down, up again; the models
match the migrations; several processes starting at once migrate safely."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from api.config import Settings
from api.db import migrate
from api.db.engine import create_engine
from api.db.tables import Base
from tests.integration.api_client import running_app
from tests.integration.databases import (
    DATABASE_KINDS,
    fresh_postgres_database,
    postgres_server_url,
    sqlite_url,
)

TABLES = {"users", "access_tokens", "api_keys", "posts", "comments"}


@pytest.fixture(params=DATABASE_KINDS)
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database with no tables at all."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "fresh.db")
        return
    yield from fresh_postgres_database(postgres_server_url())


def _settings(url: str) -> Settings:
    return Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _differences(connection: Connection) -> list[object]:
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_upgrade_downgrade_upgrade(fresh_database: str) -> None:
    async def check() -> None:
        engine = create_engine(_settings(fresh_database))
        try:
            await migrate.upgrade(engine)
            async with engine.connect() as connection:
                assert await connection.run_sync(_tables) == TABLES
                assert await connection.run_sync(_differences) == []
            await migrate.downgrade(engine, "base")
            async with engine.connect() as connection:
                assert await connection.run_sync(_tables) == set()
            await migrate.upgrade(engine)
            async with engine.connect() as connection:
                assert await connection.run_sync(_tables) == TABLES
                assert await connection.run_sync(_differences) == []
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_concurrent_start_ups_migrate_once(fresh_database: str) -> None:
    """Four engines (as four workers would) upgrading at the same moment all succeed."""

    async def one_worker() -> None:
        engine = create_engine(_settings(fresh_database))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    async def check() -> None:
        await asyncio.gather(*(one_worker() for _ in range(4)))
        engine = create_engine(_settings(fresh_database))
        try:
            async with engine.connect() as connection:
                assert await connection.run_sync(_tables) == TABLES
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_the_app_creates_its_sqlite_database_under_the_work_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, work_dir=tmp_path / "work")  # type: ignore[call-arg]
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'work' / 'tritongate.db'}"

    async def check() -> None:
        async with running_app(settings, inference=False) as (_, client):
            reply = await client.post(
                "/register", json={"email": "first@example.com", "password": "long enough"}
            )
            assert reply.status_code == 201

    asyncio.run(check())
    assert (tmp_path / "work" / "tritongate.db").is_file()


def test_the_alembic_command_uses_the_settings_url(tmp_path: Path) -> None:
    """`alembic upgrade head` from the repository root, URL from TRITONGATE_DATABASE_URL."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    database = tmp_path / "cli.db"
    env = {**os.environ, "TRITONGATE_DATABASE_URL": sqlite_url(database)}
    for arguments in (["upgrade", "head"], ["check"], ["downgrade", "base"]):
        result = subprocess.run(
            [sys.executable, "-m", "alembic", *arguments],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    assert database.is_file()
