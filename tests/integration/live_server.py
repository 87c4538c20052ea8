"""The API in its own uvicorn process, as it runs in production, for tests that need a real
server: WebSockets over the network, signals, the browser."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from api.config import Settings
from api.platform.uvicorn_options import uvicorn_flags
from serving.launcher import LocalTriton, TritonPorts
from tests.integration.api_client import app_settings


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM (a graceful stop) and wait; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def live_server(settings: Settings, log_dir: Path, timeout: float = 60.0) -> Iterator[LiveServer]:
    """uvicorn serving ``create_app(settings)`` (passed through the environment)."""
    port = TritonPorts.free().http
    log_path = log_dir / f"api-{port}.log"
    env = {**os.environ, **settings.to_environment()}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.main:app_from_environment",
        "--factory",
        "--host=127.0.0.1",
        f"--port={port}",
        *uvicorn_flags(),
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = LiveServer(process, port, log_path)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(f"{server.base_url}/health/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not become ready:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def live_api(
    triton: LocalTriton, repository: Path, log_dir: Path, **overrides: object
) -> Iterator[LiveServer]:
    """The API against ``triton`` with the test settings (``app_settings``) plus ``overrides``."""
    settings = app_settings(repository, triton_url=triton.grpc_url, **overrides)
    with live_server(settings, log_dir) as running:
        yield running
