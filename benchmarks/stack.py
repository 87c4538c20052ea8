"""The servers a benchmark run measures, started when first needed and stopped at the end.

:class:`Stack` owns one server per role, each in its own process group:

* ``triton``: a local tritonserver on the model repository (or on a *derived* repository whose
  newsgroups ``max_batch_size`` differs, for the batch-size sweep), unless a Triton URL was
  given (``--triton-url`` / ``TRITONGATE_TRITON_URL``);
* ``api``: the TritonGate API as ``tritongate serve`` runs it (``api.platform.server.api_command``:
  uvicorn
  for one worker, gunicorn for several) with an :class:`ApiConfig`, pointed at that Triton;
  unless a deployment URL was given (``--url``), which is then measured as it is;
* ``book``: the book's app (:mod:`benchmarks.baselines.book_app`), text only or with YOLOS;
* ``noop``: the same FastAPI + uvicorn stack answering constants;
* ``raw_noop``: the raw asyncio server for the generator's own ceiling.

Asking for a role with a different configuration stops the running one first (the API follows
its Triton). A server that cannot be had at all (a remote run has no local book app) raises
:class:`Unavailable` with the reason the report gives.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from google.protobuf import text_format

from benchmarks.baselines.book_app import JOBLIB_ENV, YOLOS_DIR_ENV
from benchmarks.servers import (
    UVICORN_STARTUP_MARKER,
    ServerProcess,
    free_port,
    raw_noop_server,
    uvicorn_server,
)
from serving.model_config import load_model_config
from serving.specs import NEWSGROUPS

API_READY_TIMEOUT_S: Final = 120.0
BOOK_STARTUP_TIMEOUT_S: Final = 300.0


class Unavailable(RuntimeError):
    """This run cannot have that server (remote deployment, external Triton, missing files)."""


@dataclass(frozen=True)
class ApiConfig:
    """How the API under test batches (per model and worker process).

    ``max_batch_size`` None keeps the repository's configuration; a number runs Triton and the
    API on a derived repository whose newsgroups model has that ``max_batch_size`` (the front
    end's batches are capped by the model's, so both change together).
    """

    batching: bool = True
    max_delay_us: int = 2000
    max_batch_size: int | None = None
    cache: bool = False  # the prediction cache: off unless a scenario measures it (4)

    def env(self) -> dict[str, str]:
        return {
            "TRITONGATE_BATCHING_ENABLED": "true" if self.batching else "false",
            "TRITONGATE_BATCH_MAX_DELAY_US": str(self.max_delay_us),
            "TRITONGATE_CACHE_ENABLED": "true" if self.cache else "false",
        }

    @property
    def label(self) -> str:
        cache = ", prediction cache on" if self.cache else ""
        if not self.batching:
            return f"front-end batching off{cache}"
        size = "" if self.max_batch_size is None else f", batch ≤ {self.max_batch_size}"
        return f"batching on, max delay {self.max_delay_us} µs{size}{cache}"

    def to_dict(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "batching": self.batching,
            "max_delay_us": self.max_delay_us,
            "max_batch_size": self.max_batch_size,
        }
        if self.cache:  # only when on: reports without the key stay comparable
            described["cache"] = True
        return described


@dataclass(frozen=True)
class StackSettings:
    """Everything the stack needs to know to start (or reach) the servers."""

    repository: Path
    work_dir: Path
    config_name: str | None = "cpu"
    workers: int = 1
    url: str | None = None
    triton_url: str | None = None
    book_joblib: Path | None = None

    @property
    def remote(self) -> bool:
        return self.url is not None


def derive_repository(
    source: Path, target: Path, model: str, max_batch_size: int, config_name: str | None
) -> Path:
    """A copy of ``source`` where ``model``'s configs say ``max_batch_size``.

    Configuration files are rewritten (preferred batch sizes above the new maximum dropped);
    model files and labels are symbolic links to the originals.
    """
    if target.exists():
        shutil.rmtree(target)
    for model_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        for path in model_dir.rglob("*"):
            relative = path.relative_to(source)
            destination = target / relative
            if path.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
            elif path.suffix == ".pbtxt" and model_dir.name == model:
                destination.parent.mkdir(parents=True, exist_ok=True)
                config = load_model_config(path)
                config.max_batch_size = max_batch_size
                preferred = [s for s in config.dynamic_batching.preferred_batch_size]
                kept = [s for s in preferred if s <= max_batch_size] or [max_batch_size]
                if config.HasField("dynamic_batching"):
                    del config.dynamic_batching.preferred_batch_size[:]
                    config.dynamic_batching.preferred_batch_size.extend(kept)
                destination.write_text(text_format.MessageToString(config))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.symlink_to(path.resolve())
    return target


def _status(url: str, headers: Mapping[str, str]) -> int | None:
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _http_metadata(url: str) -> dict[str, Any] | None:
    """Triton's server metadata (name, version) over HTTP, or None."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            data = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    return {"name": data.get("name"), "version": data.get("version")}


def _grpc_metadata(url: str) -> dict[str, Any] | None:
    """Triton's server metadata (name, version) over gRPC, or None."""
    try:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url)
        try:
            data = client.get_server_metadata(as_json=True, client_timeout=5.0)
        finally:
            client.close()
    except Exception:  # unreachable or not Triton: the run reports errors where it matters
        return None
    return {"name": data.get("name"), "version": data.get("version")}


def wait_ready(url: str, headers: Mapping[str, str], timeout: float) -> None:
    """Poll ``url`` until it answers 200; :class:`TimeoutError` with the last status if not."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = _status(url, headers)
        if status == 200:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s (last status {status})")


class Stack:
    """The running servers of one benchmark run (a context manager; see the module docstring)."""

    def __init__(
        self,
        settings: StackSettings,
        log: Callable[[str], None] = lambda _message: None,
        book_yolos: Callable[[], Path] | None = None,
    ) -> None:
        """``book_yolos`` makes the book's YOLOS directory, once, when first needed."""
        self.settings = settings
        self.log = log
        self.log_dir = settings.work_dir / "logs"
        self._book_yolos = book_yolos
        self._book_yolos_dir: Path | None = None
        self._failed: dict[tuple[str, object], str] = {}
        self._triton: Any | None = None  # serving.launcher.LocalTriton
        self._triton_key: int | None = None
        self._api: ServerProcess | None = None
        self._api_config: ApiConfig | None = None
        self._servers: dict[str, tuple[object, ServerProcess]] = {}
        self.triton_metadata: dict[str, Any] | None = None  # name, version: set once reached

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Triton --------------------------------------------------------------------------------

    def triton_url(self, max_batch_size: int | None = None) -> str:
        """gRPC ``host:port`` of a Triton serving the repository (newsgroups capped if asked)."""
        if self.settings.triton_url:
            if max_batch_size is not None:
                raise Unavailable(
                    "changing max_batch_size needs a local Triton whose configuration the runner "
                    "controls (not the external Triton at --triton-url)"
                )
            if self.triton_metadata is None:
                self.triton_metadata = _grpc_metadata(self.settings.triton_url)
            return self.settings.triton_url
        if self.settings.remote:
            raise Unavailable("a remote deployment was given (--url) and no --triton-url")
        if self._triton is not None and self._triton_key == max_batch_size:
            return str(self._triton.grpc_url)
        self._stop_api()
        self._stop_triton()
        from serving.launcher import LocalTriton

        repository = self._repository_for(max_batch_size)
        if max_batch_size is not None:
            derive_repository(
                self.settings.repository,
                repository,
                NEWSGROUPS.name,
                max_batch_size,
                self.settings.config_name,
            )
        label = "" if max_batch_size is None else f" (newsgroups max_batch_size {max_batch_size})"

        def start() -> str:
            self.log(f"starting tritonserver{label}…")
            triton = LocalTriton(
                repository, self.settings.work_dir / "triton", config_name=self.settings.config_name
            )
            triton.start()
            self._triton, self._triton_key = triton, max_batch_size
            if self.triton_metadata is None:
                self.triton_metadata = _http_metadata(f"{triton.http_url}/v2")
            return str(triton.grpc_url)

        return self._remembering("triton", max_batch_size, start)

    def _repository_for(self, max_batch_size: int | None) -> Path:
        """The repository itself, or the derived one for a newsgroups ``max_batch_size``."""
        if max_batch_size is None:
            return self.settings.repository
        return self.settings.work_dir / "repositories" / f"newsgroups-b{max_batch_size}"

    def _stop_triton(self) -> None:
        if self._triton is not None:
            self._triton.stop()
            self._triton = None
            self._triton_key = None

    # -- the API ---------------------------------------------------------------------------------

    def api_url(self, config: ApiConfig) -> str:
        """Base URL of the API configured as ``config`` (started or restarted as needed)."""
        if self.settings.remote:
            assert self.settings.url is not None
            return self.settings.url.rstrip("/")
        if self._api is not None and self._api_config == config:
            return self._api.url
        self._stop_api()
        return self._remembering("api", config, lambda: self._start_api(config))

    def _start_api(self, config: ApiConfig) -> str:
        grpc_url = self.triton_url(config.max_batch_size)
        repository = self._repository_for(config.max_batch_size)
        from api.config import Settings
        from api.platform.server import api_command

        port = free_port()
        workers = self.settings.workers
        env = {
            **self.api_database_env(),
            # The prediction cache is off unless ``config.cache``: the inputs repeat, and the
            # scenarios measure inference (scenario 4 measures the cache).
            **config.env(),
            # Like the book's app (no authentication): inference is open on the local stack.
            "TRITONGATE_INFERENCE_AUTH": "open",
            "TRITONGATE_TRITON_URL": grpc_url,
            "TRITONGATE_INFERENCE_BACKEND": "triton",
            "TRITONGATE_MODEL_REPOSITORY": str(repository.resolve()),
            "TRITONGATE_TRITON_CONFIG_NAME": self.settings.config_name or "",
            "TRITONGATE_WORKERS": str(workers),
            "TRITONGATE_HOST": "127.0.0.1",
            "TRITONGATE_PORT": str(port),
        }
        command = api_command(
            Settings(host="127.0.0.1", port=port, workers=workers, model_repository=repository)
        )
        self.log(f"starting the API ({config.label}, {workers} worker(s))…")
        server = ServerProcess(
            command,
            port=port,
            ready_path="/health/live",
            ready_marker=UVICORN_STARTUP_MARKER,
            ready_marker_count=workers,
            env=env,
            startup_timeout=API_READY_TIMEOUT_S,
            log_path=self.log_dir / "api.log",
        )
        server.start()
        try:
            wait_ready(f"{server.url}/health/ready", {}, API_READY_TIMEOUT_S)
        except TimeoutError as error:
            tail = server.log_tail()
            server.stop(keep_log=True)
            raise RuntimeError(f"{error}; the API's log ends with:\n{tail}") from error
        self._api, self._api_config = server, config
        return server.url

    def api_database_env(self) -> dict[str, str]:
        """A database of the benchmark's own, unless one is configured (inference never uses it)."""
        if os.environ.get("TRITONGATE_DATABASE_URL"):
            return {}
        path = (self.settings.work_dir / "api.db.engine").resolve()
        return {"TRITONGATE_DATABASE_URL": f"sqlite+aiosqlite:///{path}"}

    def _stop_api(self) -> None:
        if self._api is not None:
            self._api.stop(keep_log=True)
            self._api = None
            self._api_config = None

    # -- baselines ---------------------------------------------------------------------------------

    def _local_only(self, what: str) -> None:
        if self.settings.remote:
            raise Unavailable(
                f"{what} runs on this machine and would not be comparable with the remote "
                "deployment (--url)"
            )

    def _remembering(self, role: str, key: object, start: Callable[[], str]) -> str:
        """``start()``, unless it failed before for this role and key: then fail at once."""
        earlier = self._failed.get((role, key))
        if earlier is not None:
            raise RuntimeError(f"{role} did not start earlier in this run: {earlier}")
        try:
            return start()
        except Unavailable:
            raise
        except Exception as error:
            self._failed[(role, key)] = f"{type(error).__name__}: {error}"
            raise

    def _server(self, role: str, key: object, make: Callable[[], ServerProcess]) -> str:
        running = self._servers.get(role)
        if running is not None and running[0] == key:
            return running[1].url
        if running is not None:
            running[1].stop(keep_log=True)
            del self._servers[role]

        def start() -> str:
            server = make()
            server.start()
            self._servers[role] = (key, server)
            return server.url

        return self._remembering(role, key, start)

    def book_url(self, *, with_yolos: bool) -> str:
        """The book's app: text classification, and object detection when ``with_yolos``."""
        self._local_only("the book baseline")
        joblib = self.settings.book_joblib
        if joblib is None or not joblib.is_file():
            raise Unavailable(
                f"the book's joblib file ({joblib}) does not exist: run `tritongate export "
                "newsgroups`, or pass --book-joblib"
            )
        yolos_dir = self._book_yolos_directory() if with_yolos else None

        def make() -> ServerProcess:
            self.log(f"starting the book's app ({'text + YOLOS' if with_yolos else 'text'})…")
            return uvicorn_server(
                "benchmarks.baselines.book_app:create_app",
                factory=True,
                workers=self.settings.workers,
                env={JOBLIB_ENV: str(joblib), YOLOS_DIR_ENV: str(yolos_dir or "")},
                startup_timeout=BOOK_STARTUP_TIMEOUT_S,
                log_path=self.log_dir / "book.log",
            )

        return self._server("book", with_yolos, make)

    def _book_yolos_directory(self) -> Path:
        if self._book_yolos_dir is None:
            if self._book_yolos is None:
                raise Unavailable("the book baseline has no YOLOS weights for this run")
            self.log("writing the book's YOLOS (same weights as the export)…")
            try:
                self._book_yolos_dir = self._book_yolos()
            except Exception as error:
                raise Unavailable(
                    f"the book's YOLOS could not be prepared: {type(error).__name__}: {error}"
                ) from error
        return self._book_yolos_dir

    def noop_url(self) -> str:
        """FastAPI + uvicorn answering constants (same worker count as the API)."""
        self._local_only("the no-op baseline")

        def make() -> ServerProcess:
            self.log("starting the no-op app…")
            return uvicorn_server(
                "benchmarks.baselines.noop_app:app",
                workers=self.settings.workers,
                log_path=self.log_dir / "noop.log",
            )

        return self._server("noop", None, make)

    def raw_noop_url(self) -> str:
        """The raw asyncio no-op server (the generator's ceiling runs locally in every mode)."""
        return self._server("raw_noop", None, raw_noop_server)

    def stop(self, role: str) -> None:
        """Stop the server of ``role`` (``api``, ``triton``, ``book``, ``noop``, ``raw_noop``)."""
        if role == "api":
            self._stop_api()
        elif role == "triton":
            self._stop_api()
            self._stop_triton()
        elif role in self._servers:
            self._servers.pop(role)[1].stop(keep_log=True)

    # -- bookkeeping ---------------------------------------------------------------------------

    def process_groups(self) -> dict[str, int]:
        """Process group ids of the running servers, by role (for CPU accounting)."""
        groups: dict[str, int] = {}
        if self._triton is not None and self._triton.pid is not None:
            groups["triton"] = int(self._triton.pid)
        if self._api is not None and self._api.pid is not None:
            groups["api"] = self._api.pid
        for role, (_key, server) in self._servers.items():
            if server.pid is not None:
                groups[role] = server.pid
        return groups

    def close(self) -> None:
        """Stop everything: the API before its Triton, then the baselines."""
        self._stop_api()
        self._stop_triton()
        for role in list(self._servers):
            self.stop(role)
