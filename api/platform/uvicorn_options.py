"""The uvicorn options every API process runs with: one worker (``tritongate serve``), gunicorn's
workers (``api/platform/gunicorn_worker.py``) and the tests' live servers.

``ws_per_message_deflate`` is off: stream frames are JPEG/PNG/WebP, which deflate cannot shrink,
and with the extension negotiated every client (browsers too) compresses each frame and the
server inflates it. Measured with 4 streams × 24 fps of 640 × 480 JPEGs, the benchmark's client
spent 0.4 of a core in zlib alone, on the cores that run the model.

``http`` is uvicorn's httptools protocol with a cap on request heads' size and a deadline for
them (``api/platform/transport.py``: uvicorn bounds neither with httptools).
"""

from __future__ import annotations

from typing import Any

from api.platform.timeouts import UVICORN_GRACEFUL_S

UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "api.platform.transport:GuardedHttpToolsProtocol",
    "ws_per_message_deflate": False,
    "timeout_graceful_shutdown": UVICORN_GRACEFUL_S,
}


def uvicorn_flags(options: dict[str, Any] = UVICORN_OPTIONS) -> list[str]:
    """The options as uvicorn command-line flags (``--ws-per-message-deflate=False`` …)."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
