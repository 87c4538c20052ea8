"""The gunicorn worker class: uvicorn's, with uvloop, httptools and a bounded graceful stop.

``uvicorn_worker.UvicornWorker`` lets in-flight requests run as long as they like after SIGTERM,
until gunicorn's master kills the worker; with ``timeout_graceful_shutdown`` uvicorn gives up on
them first, so the app's lifespan shutdown still runs (batchers, gRPC channel, database pool).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from api.timeouts import UVICORN_GRACEFUL_S


class TritonGateWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": UVICORN_GRACEFUL_S,
    }
