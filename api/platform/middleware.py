"""One pure-ASGI middleware for what every request needs: a request id, ``X-Process-Time``,
HTTP metrics and the optional access line.

Pure ASGI (not ``BaseHTTPMiddleware``): it wraps ``send`` to add two headers and nothing else,
so a request pays a context-variable set, two clock reads and a counter/histogram update.

* The request id comes from ``X-Request-ID`` when the client sent an acceptable one, else it is
  generated; it is bound (``api/platform/request_context.py``) for the whole request or WebSocket
  session, so every log line written meanwhile carries it, and returned as ``X-Request-ID``.
* ``X-Process-Time``: seconds from the request's arrival to the start of its response.
* Metrics are labelled with the route template (``/models/{name}``), never the raw path, so
  label sets stay bounded; requests that match no route are ``unmatched``.
* The access line (``TRITONGATE_ACCESS_LOG=true``, logger ``tritongate.access``) has the method,
  the path without its query string (where tokens may be), status and duration. The path is the
  decoded one and may hold control characters (``%0a``): the formatters escape them
  (``api/platform/logging_setup.py``), so it cannot start a line of its own.
* An exception that escapes the app is logged with the request id and answered with a 500
  carrying the same headers (when the response has not started yet).
"""

from __future__ import annotations

import json
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.platform.metrics import UNMATCHED_ROUTE, Metrics
from api.platform.request_context import accept_or_generate, request_id

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("tritongate.access")

REQUEST_ID_KEY = b"x-request-id"
PROCESS_TIME_KEY = b"x-process-time"
_INTERNAL_ERROR = json.dumps({"detail": "Internal Server Error"}).encode()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics | None, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            token = request_id.set(accept_or_generate(_header(scope, REQUEST_ID_KEY)))
            try:
                await self.app(scope, receive, send)
            finally:
                request_id.reset(token)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        rid = accept_or_generate(_header(scope, REQUEST_ID_KEY))
        token = request_id.set(rid)
        rid_header = (REQUEST_ID_KEY, rid.encode("ascii"))
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                elapsed = f"{time.perf_counter() - started:.6f}".encode("ascii")
                # Each message is a fresh dict (as CORSMiddleware assumes too): set in place.
                message["headers"] = [
                    *message.get("headers", ()),
                    rid_header,
                    (PROCESS_TIME_KEY, elapsed),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_INTERNAL_ERROR)).encode("ascii")),
                    ],
                }
            )
            await send_with_headers({"type": "http.response.body", "body": _INTERNAL_ERROR})
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            if self.metrics is not None:
                self.metrics.observe_request(scope["method"], route, status, elapsed)
            if self.access_log:
                access_logger.info(
                    "%s %s %d %.2f ms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000.0,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000.0, 3),
                    },
                )
            request_id.reset(token)
