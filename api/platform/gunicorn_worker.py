"""The gunicorn worker class: uvicorn's, with the API's uvicorn options
(api/platform/uvicorn_options.py):
uvloop, httptools with a cap and a deadline on request heads (``api/platform/transport.py``; the
limits are
set in each worker by ``api.main.app_from_environment``), no WebSocket compression and a bounded
graceful stop. (gunicorn's own ``limit_request_*`` options do not apply: uvicorn parses requests.)

``uvicorn_worker.UvicornWorker`` lets in-flight requests run as long as they like after SIGTERM,
until gunicorn's master kills the worker; with ``timeout_graceful_shutdown`` uvicorn gives up on
them first, so the app's lifespan shutdown still runs (batchers, gRPC channel, database pool).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from api.platform.uvicorn_options import UVICORN_OPTIONS


class TritonGateWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = dict(UVICORN_OPTIONS)
