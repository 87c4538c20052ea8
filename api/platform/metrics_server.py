"""Metrics on their own port (``TRITONGATE_METRICS_PORT``), served by ``tritongate serve``.

The parent process owns the multiprocess directory, so it can expose every worker's metrics
itself: a small threaded WSGI server (prometheus_client's exposition app) reading the directory
at each scrape, with the same optional bearer token as ``/metrics``. The API port then has no
``/metrics`` at all, which keeps it off a public listener.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access lines on stderr for every scrape."""


def _with_token(app: WsgiApp, token: str | None) -> WsgiApp:
    if token is None:
        return app

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"the metrics token is missing or wrong\n"]
        return app(environ, start_response)

    return guarded


class MetricsServer:
    """Serves the aggregated metrics of ``directory`` at ``http://host:port/metrics``."""

    def __init__(self, host: str, port: int, directory: Path, token: str | None) -> None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))
        app = _with_token(make_wsgi_app(registry), token)
        self._server = make_server(
            host, port, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-server", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
