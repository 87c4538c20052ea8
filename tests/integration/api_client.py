"""Running the real app (lifespan included) in-process for tests, talking HTTP through httpx."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from api.config import Settings
from api.main import create_app


def app_settings(repository: Path, **overrides: Any) -> Settings:
    """Settings for a test app; nothing is read from the environment's ``.env``."""
    values: dict[str, Any] = {"model_repository": repository, "model_refresh_interval_s": 0.5}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tritongate") as client:
            yield app, client
