"""Database fixtures for the accounts and blog tests: every test runs on SQLite, and on
PostgreSQL when TEST_DATABASE_URL is set (skipped with the reason otherwise). The model and
Triton fixtures live in tests/stack.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.databases import (
    DATABASE_KINDS,
    copy_sqlite,
    empty_tables,
    fresh_postgres_database,
    postgres_server_url,
    sqlite_url,
    upgrade_to_head,
)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    asyncio.run(upgrade_to_head(sqlite_url(path)))
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    server = postgres_server_url()
    for url in fresh_postgres_database(server):
        asyncio.run(upgrade_to_head(url))
        yield url


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database at the latest migration: a SQLite copy, or PostgreSQL emptied."""
    if request.param == "sqlite":
        return copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path / "test.db")
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(empty_tables(url))
    return url
