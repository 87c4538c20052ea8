"""``tritongate serve``: local Triton (unless one is configured) plus the API, run together.

The API runs under uvicorn for one worker and under gunicorn with uvicorn workers for several
(``api/platform/gunicorn_conf.py``; no preload: every worker builds its own inference client and
batchers
in its lifespan). Before any worker starts, the prestart step (``api/platform/prestart.py``) waits
for the
database and a configured Triton, with bounded retries, and migrates the database once here, so
workers starting together find it ready (each still checks under a lock, see ``api/db/migrate.py``).
The command waits until the API reports ready, restarts a local Triton that dies (same ports, so
the API's connections recover by themselves), and on Ctrl-C or SIGTERM stops the API first
(graceful: in-flight requests finish, see ``api/platform/timeouts.py``) and then Triton.

Metrics: this process creates (and empties of old files) the multiprocess directory and passes
it to the workers as ``PROMETHEUS_MULTIPROC_DIR``, so ``/metrics`` aggregates every worker; with
``TRITONGATE_METRICS_PORT`` it serves those metrics itself on that port instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from api.config import Settings
from api.db.migrate import safe_url
from api.platform.logging_setup import configure_logging
from api.platform.metrics import MULTIPROC_ENV
from api.platform.metrics_server import MetricsServer
from api.platform.prestart import PrestartError, prestart
from api.platform.timeouts import STOP_TIMEOUT_S
from api.platform.uvicorn_options import uvicorn_flags
from serving.launcher import LocalTriton, TritonLaunchError

logger = logging.getLogger(__name__)

APP_FACTORY = "api.main:app_from_environment"
GUNICORN_CONFIG = "python:api.platform.gunicorn_conf"
READY_TIMEOUT_SECONDS = 120.0


class ServeError(RuntimeError):
    """The API or Triton could not be started."""


def api_command(settings: Settings) -> list[str]:
    """The process that serves the API: uvicorn for one worker, gunicorn for several."""
    if settings.workers == 1:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            APP_FACTORY,
            "--factory",
            f"--host={settings.host}",
            f"--port={settings.port}",
            "--no-access-log",
            *uvicorn_flags(),
        ]
    # Workers, address, worker class and timeouts: api/platform/gunicorn_conf.py, from the same
    # settings (passed in the environment).
    return [sys.executable, "-m", "gunicorn", f"--config={GUNICORN_CONFIG}"]


def ready_message(base_url: str, docs: bool) -> str:
    """What ``serve`` prints once the API answers; the docs URL only when the docs are served."""
    where = f"{base_url}  (docs {base_url}/docs)" if docs else base_url
    return f"TritonGate API ready: {where}; Ctrl-C stops"


def prepare_metrics_dir(directory: Path) -> Path:
    """Create the multiprocess metrics directory and remove the metric files of earlier runs
    (only ``*.db`` files: the directory may be one an operator chose)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return directory.resolve()


def _probe(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"the API exited with code {process.returncode} while starting")
        if _probe(f"{base_url}/health/ready") == 200:
            return
        time.sleep(0.2)
    raise ServeError(f"the API was not ready within {timeout:.0f} s ({base_url}/health/ready)")


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def serve(settings: Settings, log: Callable[[str], None] = print) -> int:
    """Run until interrupted; the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    env = {**os.environ, **settings.to_environment()}
    triton: LocalTriton | None = None
    api: subprocess.Popen[bytes] | None = None
    metrics_server: MetricsServer | None = None
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        if settings.metrics_enabled:
            metrics_dir = prepare_metrics_dir(settings.metrics_multiproc_dir)
            env[MULTIPROC_ENV] = str(metrics_dir)
            if settings.metrics_port is not None:
                metrics_server = MetricsServer(
                    settings.host, settings.metrics_port, metrics_dir, settings.metrics_token_value
                )
                metrics_server.start()
                host = _client_host(settings.host)
                log(f"metrics of every worker: http://{host}:{metrics_server.port}/metrics")
        if settings.workers > 1 and settings.cache_enabled and not settings.redis_url_value:
            log(
                f"note: {settings.workers} workers each keep their own in-memory prediction "
                "cache (DELETE /cache clears one of them); set TRITONGATE_REDIS_URL to share one"
            )
        asyncio.run(prestart(settings, log))
        if settings.inference_backend == "triton" and not settings.triton_url:
            triton = LocalTriton.from_settings(settings)
            log("starting local tritonserver and loading models…")
            triton.start()
            env["TRITONGATE_TRITON_URL"] = triton.grpc_url
            log(f"tritonserver ready: gRPC {triton.grpc_url}, log {triton.log_path}")
        elif settings.triton_url:
            log(f"using Triton at {settings.triton_url}")
        base_url = f"http://{_client_host(settings.host)}:{settings.port}"
        api = subprocess.Popen(api_command(settings), env=env, cwd=Path.cwd())
        wait_until_ready(base_url, api, READY_TIMEOUT_SECONDS)
        log(ready_message(base_url, settings.docs_available))
        return _supervise(api, triton, log)
    except (KeyboardInterrupt, _Stop):
        log("stopping…")
        return 0
    except (TritonLaunchError, ServeError, PrestartError) as error:
        log(f"error: {error}")
        return 1
    except (SQLAlchemyError, OSError) as error:
        log(f"error: the database at {safe_url(settings.database_url)} failed: {error}")
        return 1
    finally:
        if api is not None:
            _stop_process(api)
        if triton is not None:
            triton.stop()
        if metrics_server is not None:
            metrics_server.close()
        signal.signal(signal.SIGTERM, previous)


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


def _supervise(
    api: subprocess.Popen[bytes], triton: LocalTriton | None, log: Callable[[str], None]
) -> int:
    """Block while the API runs; bring a dead local Triton back on the same ports."""
    while True:
        code = api.poll()
        if code is not None:
            log(f"the API exited with code {code}")
            return code or 1
        if triton is not None and not triton.is_running():
            log(f"tritonserver died; restarting it. Its log ended with:\n{triton.log_tail(20)}")
            try:
                triton.start()
                log("tritonserver is back")
            except TritonLaunchError as error:
                log(f"tritonserver restart failed: {error}; retrying")
                time.sleep(2)
        time.sleep(0.5)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
