"""Database fixtures for the accounts and blog tests: every test runs on SQLite, and on
PostgreSQL when TEST_DATABASE_URL is set (skipped with the reason otherwise); ``server``, the API
in its own uvicorn process with the test settings, one per test module (a module that needs other
settings defines its own). The model and Triton fixtures live in tests/stack.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.launcher import LocalTriton
from tests.integration.databases import (
    DATABASE_KINDS,
    copy_sqlite,
    empty_tables,
    fresh_postgres_database,
    postgres_server_url,
    sqlite_url,
    upgrade_to_head,
)
from tests.integration.live_server import LiveServer, live_api


@pytest.fixture(scope="module")
def server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_api(triton, exported_repository, tmp_path_factory.mktemp("api")) as running:
        yield running


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


@pytest.fixture
def verified_passwords(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every ``(password, stored hash)`` argon2 verifies during the test, in order: a spy on
    ``api.accounts.security.verify_password``, which the login and current-password checks all
    use."""
    from api.accounts import security

    verified: list[tuple[str, str]] = []
    real_verify = security.verify_password

    def spy(password: str, hashed: str) -> security.PasswordCheck:
        verified.append((password, hashed))
        return real_verify(password, hashed)

    monkeypatch.setattr(security, "verify_password", spy)
    return verified
