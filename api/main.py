"""The FastAPI application: ``create_app(settings)``; nothing connects until the lifespan runs.

The lifespan opens the database (applying migrations when ``TRITONGATE_MIGRATE_ON_STARTUP``),
then starts the inference services (client, batchers, prediction cache); shutdown closes them in
the reverse order. Every HTTP request goes through ``api/platform/middleware.py`` (request id,
``X-Process-Time``, metrics); ``/metrics`` is served unless disabled or moved to its own port.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api.accounts import security
from api.accounts.auth import API_KEY_HEADER
from api.accounts.csrf import CSRF_HEADER
from api.accounts.login_limits import build_login_limiter
from api.accounts.routes import api_keys, auth, users
from api.blog.routes import comments, posts
from api.config import Settings
from api.db import migrate
from api.db.engine import Database
from api.errors import install_error_handlers
from api.inference.admission import INFERENCE_PATHS, AdmissionMiddleware
from api.inference.cache import CACHE_HEADER
from api.inference.routes import cache, detect, health, models, page, predict, stream
from api.inference.routes.page import STATIC_DIR
from api.inference.services import start_services
from api.inference.shutdown import close_streams_on_stop
from api.inference.tenancy import record_tenant
from api.platform import metrics_route, transport
from api.platform.body_limit import BodyLimitMiddleware, BodyLimits
from api.platform.logging_setup import configure_logging
from api.platform.metrics import Metrics, multiprocess_dir
from api.platform.middleware import ObservabilityMiddleware
from api.platform.request_context import REQUEST_ID_HEADER
from api.platform.responses import error_responses
from api.platform.runtime import tune_garbage_collector
from api.platform.security_headers import SecurityHeadersMiddleware

logger = logging.getLogger(__name__)

DESCRIPTION = """
TritonGate serves a 20 Newsgroups text classifier and the YOLOS object detector through NVIDIA
Triton Inference Server, with front-end micro-batching. Overload and an unavailable Triton give
503 with `Retry-After`; a missed deadline gives 504.

Accounts and the blog: register at `/register`, get a bearer token at `/token` (the
"Authorize" button does it), or log in a browser with `/login` (cookie + CSRF header). Programs
can use API keys (`X-API-Key`). The inference endpoints need one of them unless the server runs
with `TRITONGATE_INFERENCE_AUTH=open`.
"""


async def open_database(settings: Settings) -> Database:
    database = Database.from_settings(settings)
    if settings.migrate_on_startup:
        try:
            await migrate.upgrade(database.engine)
        except BaseException:
            await database.close()
            raise
    return database


def create_app(
    settings: Settings, *, inference: bool = True, tune_runtime: bool = False
) -> FastAPI:
    """The API. ``inference=False`` leaves out the models (no inference client, no inference,
    model or readiness routes): the accounts and blog API alone, as its tests use it.
    ``tune_runtime`` applies :mod:`api.platform.runtime`'s process tuning after start-up (server
    processes only: it is process-wide)."""

    app_metrics = Metrics(multiprocess_dir()) if settings.metrics_enabled else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            database = await open_database(settings)
            stack.push_async_callback(database.close)
            app.state.database = database
            login_limiter = build_login_limiter(settings)
            stack.push_async_callback(login_limiter.close)
            app.state.login_limiter = login_limiter
            hashing_pool = security.PasswordHashingPool.from_settings(settings)
            stack.callback(hashing_pool.close)
            stack.enter_context(security.installed_hashing_pool(hashing_pool))
            app.state.hashing_pool = hashing_pool
            if inference:
                services = await start_services(settings, app_metrics)
                stack.push_async_callback(services.close)
                stack.callback(close_streams_on_stop(services.streams))
                app.state.services = services
            if tune_runtime:
                tune_garbage_collector()
            yield

    docs = settings.docs_available  # off: no /docs, /redoc, /openapi.json
    app = FastAPI(
        title="TritonGate",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # No badge fetched from validator.swagger.io (the docs' CSP would refuse it anyway).
        swagger_ui_parameters={"validatorUrl": None},
        # No 307 to the slash variant of a path: Starlette builds its Location from the Host
        # header, which the client chooses. A path is served as routed or is a 404.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    install_error_handlers(app, settings.retry_after_s)
    # Innermost middleware: request bodies over their limit get a 413 before they are read.
    # ... and bodies not received within their deadline, a 408.
    upload_body_bytes = settings.max_upload_bytes + detect.MULTIPART_OVERHEAD
    body_limits = BodyLimits(
        settings.max_body_bytes,
        settings.body_timeout_s,
        {"/object-detection": upload_body_bytes} if inference else {},
    )
    # (Inference bodies: read by the admission middleware, within the deadline, before a slot.)
    read_before = INFERENCE_PATHS if inference else {}
    app.add_middleware(BodyLimitMiddleware, limits=body_limits, read_before=read_before)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                API_KEY_HEADER,
                CSRF_HEADER,
                REQUEST_ID_HEADER,
            ],
            expose_headers=[REQUEST_ID_HEADER, "X-Process-Time", CACHE_HEADER],
        )
    if inference:
        # Overload is shed before any routing or body parsing (see api/inference/admission.py).
        app.add_middleware(
            AdmissionMiddleware,
            limit=settings.max_inference_requests or settings.queue_size,
            retry_after_s=settings.retry_after_s,
            max_wait_s=settings.admission_max_wait_s,
            body_limits=body_limits,  # bodies are read (within their deadline) before a slot
            max_receiving_per_client=settings.max_receiving_bodies_per_client,
            on_reject=app_metrics.admission_refused if app_metrics is not None else None,
        )
    # Added after CORS, so it times and labels everything, CORS included.
    app.add_middleware(ObservabilityMiddleware, metrics=app_metrics, access_log=settings.access_log)
    # Outermost: nosniff on every response (the observability middleware's own 500 included),
    # CSP and framing headers on HTML; the docs pages get their own, CDN-allowing CSP.
    docs_paths = [app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url] if docs else []
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=[p for p in docs_paths if p])
    if inference:
        required = settings.inference_auth == "required"
        # Authenticates (as get_principal) and records the user as the cache's tenant.
        guarded = [Depends(record_tenant)] if required else []
        refusals = error_responses(401, 403) if required else None
        for module in (predict, detect):
            app.include_router(module.router, dependencies=guarded, responses=refusals)
        app.include_router(stream.router)  # authenticates its own handshake
        app.include_router(models.router)
        app.include_router(health.ready_router)
        app.include_router(page.router)
        app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="assets")
    app.include_router(health.live_router)
    for module in (auth, users, api_keys, posts, comments):
        app.include_router(module.router)
    # Last: every route is matched in order, and these two are rare (admins, scrapers).
    if inference:
        app.include_router(cache.router)
    if app_metrics is not None and settings.metrics_port is None:
        app.include_router(metrics_route.router)
    return app


def app_from_environment() -> FastAPI:
    """Factory for uvicorn/gunicorn workers: settings from the environment, and the process's
    logging and request-head limits (api/platform/transport.py) configured from them (after the
    server's own set-up, which it replaces; before it accepts connections)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    transport.configure(
        max_header_bytes=settings.max_header_bytes, header_timeout_s=settings.header_timeout_s
    )
    return create_app(settings, tune_runtime=True)
