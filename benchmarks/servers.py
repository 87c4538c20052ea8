"""Servers under test as subprocesses: start, wait until they answer, stop cleanly.

:class:`ServerProcess` runs any command that serves HTTP on ``127.0.0.1:<port>`` in its own
process group, with its output in a log file. :meth:`ServerProcess.start` returns once the server
answers HTTP on ``ready_path`` (any status counts: the server is up) and, when asked, its log shows
a marker a given number of times (e.g. uvicorn's "Application startup complete." once per
worker, so every worker has finished its lifespan start-up, models loaded). :meth:`stop` sends
SIGTERM, waits, then SIGKILLs the whole process group so no worker outlives the benchmark.

:func:`uvicorn_server` builds one for an ASGI app (``module:attribute``, optionally a factory) run
by ``python -m uvicorn`` with uvloop and httptools; :func:`raw_noop_server` for
:mod:`benchmarks.baselines.raw_noop`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

PROJECT_ROOT = Path(__file__).resolve().parent.parent
UVICORN_STARTUP_MARKER = "Application startup complete."
LOG_TAIL_LINES = 40


class ServerStartError(RuntimeError):
    """The server exited or did not answer before the start-up timeout."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, the project importable, plus ``extra``."""
    env = dict(os.environ)
    paths = [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra or {})
    return env


class ServerProcess:
    """An HTTP server subprocess listening on ``host:port`` (a context manager)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int,
        host: str = "127.0.0.1",
        ready_path: str = "/",
        ready_marker: str | None = None,
        ready_marker_count: int = 1,
        env: Mapping[str, str] | None = None,
        cwd: Path = PROJECT_ROOT,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        log_path: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.port = port
        self.host = host
        self.ready_path = ready_path
        self.ready_marker = ready_marker
        self.ready_marker_count = ready_marker_count
        self.env = server_environment(env)
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._own_log = log_path is None
        self.log_path = log_path or Path(
            tempfile.mkstemp(prefix="tritongate-bench-server-", suffix=".log")[1]
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and block until it answers (see the module docstring)."""
        if self._process is not None and self._process.poll() is None:
            raise ServerStartError("the server is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # its own process group: stop() reaches every worker
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop(keep_log=True)
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"{self.command[:4]} exited with code {self._process.returncode} before "
                    f"answering; its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if self._marker_seen() and self._answers():
                return
            time.sleep(0.1)
        raise ServerStartError(
            f"{self.command[:4]} did not answer on {self.url}{self.ready_path} within "
            f"{self.startup_timeout:.0f} s; its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def _marker_seen(self) -> bool:
        if self.ready_marker is None:
            return True
        text = self.log_path.read_text(errors="replace")
        return text.count(self.ready_marker) >= self.ready_marker_count

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP status: the server is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, keep_log: bool = False) -> None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL the whole process group."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=self.stop_timeout)
        # Workers left behind by a supervisor that died: same process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._own_log and not keep_log:
            self.log_path.unlink(missing_ok=True)


def uvicorn_command(
    app: str,
    *,
    port: int,
    host: str = "127.0.0.1",
    factory: bool = False,
    workers: int = 1,
    loop: str = "uvloop",
    http: str = "httptools",
) -> list[str]:
    """``python -m uvicorn app`` without access log, on uvloop and httptools by default."""
    command = [sys.executable, "-m", "uvicorn", app]
    if factory:
        command.append("--factory")
    command += ["--host", host, "--port", str(port), "--no-access-log"]
    command += ["--loop", loop, "--http", http, "--workers", str(workers)]
    return command


def uvicorn_server(
    app: str,
    *,
    factory: bool = False,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/noop",
    startup_timeout: float = 60.0,
    port: int | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """A uvicorn server for ``app``, ready once every worker has completed its start-up."""
    port = port or free_port()
    return ServerProcess(
        uvicorn_command(app, port=port, factory=factory, workers=workers),
        port=port,
        ready_path=ready_path,
        ready_marker=UVICORN_STARTUP_MARKER,
        ready_marker_count=workers,
        env=env,
        startup_timeout=startup_timeout,
        log_path=log_path,
    )


def raw_noop_server(*, port: int | None = None, startup_timeout: float = 30.0) -> ServerProcess:
    """:mod:`benchmarks.baselines.raw_noop`: the fastest server the generator can be aimed at."""
    port = port or free_port()
    command = [sys.executable, "-m", "benchmarks.baselines.raw_noop", "--port", str(port)]
    return ServerProcess(command, port=port, ready_path="/noop", startup_timeout=startup_timeout)
