"""The FastAPI application: ``create_app(settings)``; nothing connects until the lifespan runs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from api.config import Settings
from api.errors import install_error_handlers
from api.routes import detect, health, models, predict
from api.services import start_services

logger = logging.getLogger(__name__)

DESCRIPTION = """
TritonGate serves a 20 Newsgroups text classifier and the YOLOS object detector through NVIDIA
Triton Inference Server, with front-end micro-batching. Overload and an unavailable Triton give
503 with `Retry-After`; a missed deadline gives 504.
"""


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await start_services(settings)
        app.state.services = services
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="TritonGate",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app, settings.retry_after_s)
    for module in (predict, detect, models, health):
        app.include_router(module.router)
    return app


def app_from_environment() -> FastAPI:
    """Factory for uvicorn/gunicorn workers: settings from the environment."""
    return create_app(Settings())
