"""Running the real app (lifespan included) in-process for tests, talking HTTP through httpx."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from api.config import Settings
from api.main import create_app

# Every test registers from 127.0.0.1: the registration limit (20 per hour by default) would
# refuse the suite's own accounts; tests of the limit set their own.
TEST_REGISTRATIONS_PER_IP = 100_000

# Temporary directories of the default test databases, removed when the interpreter exits.
_DATABASE_DIRS: list[tempfile.TemporaryDirectory[str]] = []


def _isolated_sqlite_url() -> str:
    directory = tempfile.TemporaryDirectory(prefix="tritongate-db-")
    _DATABASE_DIRS.append(directory)
    return f"sqlite+aiosqlite:///{Path(directory.name) / 'tritongate.db'}"


def app_settings(repository: Path, **overrides: Any) -> Settings:
    """Settings for a test app; nothing is read from the environment's ``.env``.

    Unless overridden, every app gets its own empty SQLite database, open inference endpoints
    and no prediction cache (the inference tests are about inference, so repeated inputs must
    reach the batcher; ``test_inference_auth`` covers auth, ``test_cache`` the cache).
    """
    values: dict[str, Any] = {
        "model_repository": repository,
        "model_refresh_interval_s": 0.5,
        "inference_auth": "open",
        "cache_enabled": False,
    }
    values.update(overrides)
    values.setdefault("database_url", _isolated_sqlite_url())
    values.setdefault("register_max_attempts_per_ip", TEST_REGISTRATIONS_PER_IP)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def db_app_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for the accounts and blog API alone (``create_app(..., inference=False)``)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "register_max_attempts_per_ip": TEST_REGISTRATIONS_PER_IP,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, *, inference: bool = True, base_url: str = "http://tritongate"
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, inference=inference)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield app, client
