"""Starting and stopping a local tritonserver from the ``nvidia-pytriton`` wheel.

The wheel ships tritonserver (2.51), its libraries and the Python backend with per-Python stubs,
but no ONNX Runtime backend. :class:`LocalTriton` assembles a working copy under ``work_dir``:

    <work_dir>/tritonserver/bin/tritonserver
    <work_dir>/tritonserver/backends/python/...           + the stub for this Python
    <work_dir>/tritonserver/backends/onnxruntime/model.py  our Python-based ORT backend

then runs it on free (or given) ports with this interpreter's environment first on ``PATH`` (the
stub runs model code with the ``python3`` it finds there), waits until the server and every model
are ready, and on stop terminates the whole process group so no stub process is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from serving.settings import ServingSettings

logger = logging.getLogger(__name__)

BACKEND_SOURCE = Path(__file__).parent / "triton_backends" / "onnxruntime" / "model.py"
LOG_TAIL_LINES = 60


class TritonLaunchError(RuntimeError):
    """The local tritonserver could not be assembled, started or made ready."""


@dataclass(frozen=True)
class TritonPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> TritonPorts:
        """Three ports the OS reports free right now."""
        sockets = []
        try:
            for _ in range(3):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            http, grpc, metrics = (sock.getsockname()[1] for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()
        return cls(http=http, grpc=grpc, metrics=metrics)


def _pytriton_dist() -> tuple[Path, Path]:
    """The wheel's tritonserver directory and its bundled shared libraries."""
    try:
        import pytriton
    except ImportError as error:  # pragma: no cover - a dependency of the distribution
        raise TritonLaunchError(
            "nvidia-pytriton is not installed; it provides the local tritonserver"
        ) from error
    package_dir = Path(pytriton.__file__).parent
    server_dir = package_dir / "tritonserver"
    libs_dir = package_dir.parent / "nvidia_pytriton.libs"
    if not (server_dir / "bin" / "tritonserver").exists():
        raise TritonLaunchError(f"no tritonserver binary under {server_dir}")
    return server_dir, libs_dir


def assemble_server(work_dir: Path) -> Path:
    """Copy tritonserver with the Python backend stub and our ORT backend into ``work_dir``."""
    server_dir, _ = _pytriton_dist()
    target = work_dir / "tritonserver"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        server_dir,
        target,
        ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"),
    )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonLaunchError(
            f"the nvidia-pytriton wheel has no Python backend stub for {version}"
        )
    shutil.copy2(stub, target / "backends" / "python" / "triton_python_backend_stub")
    ort_backend = target / "backends" / "onnxruntime"
    ort_backend.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BACKEND_SOURCE, ort_backend / "model.py")
    return target


def server_environment() -> dict[str, str]:
    """Environment for tritonserver: bundled libraries, this Python's libpython, this venv."""
    _, libs_dir = _pytriton_dist()
    env = dict(os.environ)
    library_dirs = [str(libs_dir)]
    python_libdir = sysconfig.get_config_var("LIBDIR")
    if python_libdir and Path(python_libdir, sysconfig.get_config_var("LDLIBRARY") or "").exists():
        library_dirs.append(python_libdir)
    if env.get("LD_LIBRARY_PATH"):
        library_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(library_dirs)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The backend imports ``serving`` from this project; make sure the stub can find it.
    project_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, env.get("PYTHONPATH")) if p)
    return env


class LocalTriton:
    """A tritonserver process serving ``repository`` with our backends."""

    def __init__(
        self,
        repository: Path,
        work_dir: Path,
        *,
        config_name: str | None = "cpu",
        ports: TritonPorts | None = None,
        startup_timeout: float = 120.0,
        log_verbose: int = 0,
        host: str = "127.0.0.1",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.repository = repository.resolve()
        self.work_dir = work_dir.resolve()
        self.config_name = config_name
        self.ports = ports
        self.startup_timeout = startup_timeout
        self.log_verbose = log_verbose
        self.host = host
        self.extra_args = extra_args
        self.log_path = self.work_dir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> LocalTriton:
        """A server as the settings describe it (ports not configured are picked free)."""
        chosen = (
            settings.triton_http_port,
            settings.triton_grpc_port,
            settings.triton_metrics_port,
        )
        ports = None
        if any(chosen):
            free = TritonPorts.free()
            ports = TritonPorts(
                http=chosen[0] or free.http,
                grpc=chosen[1] or free.grpc,
                metrics=chosen[2] or free.metrics,
            )
        return cls(
            settings.model_repository,
            settings.work_dir / "triton",
            config_name=settings.triton_config_name or None,
            ports=ports,
            host=settings.triton_host,
            startup_timeout=settings.triton_startup_timeout,
        )

    # -- addresses ----------------------------------------------------------------------------

    def _require_ports(self) -> TritonPorts:
        if self.ports is None:
            raise TritonLaunchError("tritonserver has not been started")
        return self.ports

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self._require_ports().grpc}"

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self._require_ports().http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self._require_ports().metrics}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # -- lifecycle ----------------------------------------------------------------------------

    def command(self, server: Path) -> list[str]:
        ports = self._require_ports()
        command = [
            str(server / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={server / 'backends'}",
            f"--cache-directory={server / 'caches'}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={ports.http}",
            f"--grpc-port={ports.grpc}",
            f"--metrics-port={ports.metrics}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.log_verbose}",
            # Python backend stubs talk over /dev/shm regions; a unique prefix lets several
            # local servers (tests, benchmarks) share a machine.
            f"--backend-config=python,shm-region-prefix-name=tritongate_{os.getpid()}_{ports.grpc}_",
        ]
        if self.config_name:
            command.append(f"--model-config-name={self.config_name}")
        return [*command, *self.extra_args]

    def start(self) -> None:
        """Start tritonserver and block until it and all its models are ready."""
        if self._process is not None and self._process.poll() is None:
            raise TritonLaunchError("tritonserver is already running")
        if not self.repository.is_dir():
            raise TritonLaunchError(f"model repository {self.repository} does not exist")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        server = assemble_server(self.work_dir)
        if self.ports is None:
            self.ports = TritonPorts.free()
        command = self.command(server)
        logger.info("starting tritonserver: %s", " ".join(command))
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=server_environment(),
                cwd=self.work_dir,
                start_new_session=True,  # its own process group: stop() reaps the stubs too
            )
        try:
            self.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise TritonLaunchError(
                    f"tritonserver exited with code {code} before it was ready; its log "
                    f"({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if self.is_ready():
                logger.info("tritonserver ready: gRPC %s, HTTP %s", self.grpc_url, self.http_url)
                return
            time.sleep(0.25)
        raise TritonLaunchError(
            f"tritonserver was not ready after {timeout:.0f} s; its log ({self.log_path}) "
            f"ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server gracefully (SIGTERM), then kill its process group if it lingers."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver ignored SIGTERM for %.0f s; killing it", timeout)
        # Whatever is left in its process group (Python backend stubs) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        self._process = None

    def kill(self) -> None:
        """Kill the server abruptly (fault-injection in tests)."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
            self._process = None

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        if self._process is None:
            raise TritonLaunchError("tritonserver has not been started")
        return self._process.wait()

    def __enter__(self) -> LocalTriton:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
