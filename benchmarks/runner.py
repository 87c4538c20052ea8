"""``tritongate bench``: run the chosen scenarios and write the report.

Order of a run:

1. Describe the machine (:mod:`benchmarks.machine`) and the configuration; load the inputs (the
   newsgroups test documents and the shared photos) and, when the detection scenario runs
   locally, write the book's YOLOS directory (:mod:`benchmarks.baselines.book_assets`).
2. Plan every selected scenario (:mod:`benchmarks.scenarios`): the generator's ceiling first,
   then each scenario's steps. Parts that cannot run (a remote deployment has no local book app)
   are recorded as skipped, with the reason.
3. Run the steps in order under a progress bar (stderr). Servers are started by the
   :class:`~benchmarks.stack.Stack` when a step first needs them; the baselines' servers are
   stopped at the end of each scenario, everything at the end of the run, on error and on
   Ctrl-C (which still writes what was measured, marked as interrupted).
4. Write ``report.json``, ``report.md`` and the PNG plots (:mod:`benchmarks.report`) into
   ``<output root>/<date>-<machine>-<commit>/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from benchmarks import machine
from benchmarks.baselines.book_assets import BookAssetsError, prepare_book_yolos, weights_source
from benchmarks.frames import FRAME_SIZE, JPEG_QUALITY
from benchmarks.inputs import (
    detection_images,
    export_data_home,
    export_joblib,
    newsgroups_texts,
)
from benchmarks.records import RunRecord, ScenarioRecord
from benchmarks.report import write_report
from benchmarks.scenarios import Scenario, Step, select
from benchmarks.session import Overrides, Session
from benchmarks.stack import ApiConfig, Stack, StackSettings, Unavailable, wait_ready

DEFAULT_OUTPUT_ROOT: Final = Path(__file__).resolve().parent / "results"
SECRET_MARKERS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
BASELINE_ROLES: Final = ("book", "noop", "raw_noop")
SMALL_MACHINE_CORES: Final = 4


@dataclass(frozen=True)
class BenchOptions:
    """Everything ``tritongate bench`` can be told (see ``tritongate bench --help``)."""

    scenarios: tuple[str, ...] = ()
    duration: float | None = None
    warmup: float | None = None
    concurrency: tuple[int, ...] | None = None
    rates: tuple[float, ...] | None = None
    rounds: int | None = None
    workers: int = 1
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_header: str = "X-API-Key"
    triton_url: str | None = None
    repository: Path = Path("model_repository")
    config_name: str | None = "cpu"
    work_dir: Path = Path(".tritongate")
    images_dir: Path | None = None
    book_joblib: Path | None = None
    output_root: Path = DEFAULT_OUTPUT_ROOT
    output_dir: Path | None = None
    machine_name: str | None = None
    timeout: float = 30.0
    progress: bool = True

    def auth_headers(self) -> dict[str, str]:
        """The header carrying ``api_key`` (``Authorization: Bearer …`` by default)."""
        if not self.api_key:
            return {}
        if self.api_key_header.lower() == "authorization":
            return {"Authorization": f"Bearer {self.api_key}"}
        return {self.api_key_header: self.api_key}

    def described(self) -> dict[str, Any]:
        """The options for the report, the API key redacted."""
        return {
            "scenarios": list(self.scenarios) or ["all"],
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "concurrency": None if self.concurrency is None else list(self.concurrency),
            "rates": None if self.rates is None else list(self.rates),
            "rounds": self.rounds,
            "workers": self.workers,
            "url": self.url,
            "api_key": "set (redacted)" if self.api_key else None,
            "api_key_header": self.api_key_header if self.api_key else None,
            "triton_url": self.triton_url,
            "repository": str(self.repository),
            "config_name": self.config_name,
            "images_dir": None if self.images_dir is None else str(self.images_dir),
            "book_joblib": None if self.book_joblib is None else str(self.book_joblib),
            "timeout_s": self.timeout,
        }


def tritongate_environment() -> dict[str, str]:
    """``TRITONGATE_*`` variables in effect (they configure the API), secrets left out."""
    return {
        name: value
        for name, value in sorted(os.environ.items())
        if name.startswith("TRITONGATE_") and not any(m in name for m in SECRET_MARKERS)
    }


def default_api_config() -> ApiConfig:
    """The API's batching settings as ``tritongate serve`` would read them now (env, .env)."""
    from api.config import Settings

    settings = Settings()
    return ApiConfig(batching=settings.batching_enabled, max_delay_us=settings.batch_max_delay_us)


def output_directory(options: BenchOptions, info: dict[str, Any], now: dt.datetime) -> Path:
    """``<root>/<date>-<machine>-<commit>``, with ``-2``, ``-3``… if it exists already."""
    if options.output_dir is not None:
        return options.output_dir
    name = machine.slug(options.machine_name) if options.machine_name else info["name"]
    commit = info["git"].get("short_commit") or "nocommit"
    base = options.output_root / f"{now:%Y-%m-%d}-{name}-{commit[:7]}"
    candidate, index = base, 1
    while candidate.exists():
        index += 1
        candidate = base.with_name(f"{base.name}-{index}")
    return candidate


class _ProgressBar:
    """A rich progress bar on stderr advanced by each step's planned seconds, smoothly."""

    def __init__(self, total: float, enabled: bool) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task: TaskID = self.progress.add_task("benchmark", total=max(total, 1e-9))
        self.done = 0.0

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def log(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(f"[bold cyan]›[/] {message}", highlight=False)

    def describe(self, text: str) -> None:
        self.progress.update(self.task, description=text)

    @contextmanager
    def step(self, label: str, seconds: float) -> Iterator[None]:
        """Show ``label``; move the bar through ``seconds`` while the step runs."""
        self.describe(label)
        stop = threading.Event()
        started = time.monotonic()

        def tick() -> None:
            while not stop.wait(0.25):
                elapsed = min(time.monotonic() - started, seconds * 0.98)
                self.progress.update(self.task, completed=self.done + elapsed)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            self.done += seconds
            self.progress.update(self.task, completed=self.done)


def _configuration(
    options: BenchOptions, session: Session, windows: dict[str, dict[str, float]]
) -> dict[str, Any]:
    from benchmarks.baselines.limit import load_model_config_dict

    models: dict[str, Any] = {}
    if session.local_repository:
        for model in ("newsgroups", "yolos"):
            try:
                config = load_model_config_dict(options.repository, model, options.config_name)
            except OSError:
                continue
            models[model] = {
                key: config.get(key)
                for key in ("max_batch_size", "dynamic_batching", "instance_group", "parameters")
                if key in config
            }
    return {
        "options": options.described(),
        "mode": "remote deployment" if options.url else "local stack started by the runner",
        "api_default": session.default_api.to_dict(),
        "api_auth": (
            f"credential sent in {options.api_key_header}"
            if options.url and options.api_key
            else "none sent"
            if options.url
            else "open (TRITONGATE_INFERENCE_AUTH=open: no credentials, like the book's app)"
        ),
        "api_cache": (
            "as deployed (repeated inputs may be answered by its prediction cache)"
            if options.url
            else "off (TRITONGATE_CACHE_ENABLED=false: the inputs repeat, inference is measured), "
            "on in scenario 4 only"
        ),
        "workers": options.workers,
        "windows": windows,
        "triton": {
            "url": options.triton_url or ("local tritonserver" if not options.url else None),
            "config_name": options.config_name,
            "models": models,
            "server": session.stack.triton_metadata,
        },
        "environment": tritongate_environment(),
    }


def _notes(
    options: BenchOptions, info: dict[str, Any], yolos_source: dict[str, Any] | None
) -> list[str]:
    notes = []
    if not options.url and info["cores"] <= SMALL_MACHINE_CORES:
        notes.append(
            f"This machine has {info['cores']} cores shared by the load generator, the API, "
            "Triton and the baselines (see the CPU columns): use these figures for ratios "
            "between configurations measured in the same run, not as absolutes."
        )
    if yolos_source is not None and yolos_source.get("weights") == "random-init":
        notes.append(
            "YOLOS weights are random (random-init, seed "
            f"{yolos_source.get('seed')}, {'tiny' if yolos_source.get('tiny') else 'full-size'} "
            "architecture) in both TritonGate and the book baseline: the compute is the real "
            "model's, the detections are meaningless."
        )
    if options.url:
        notes.append(
            "The inputs rotate (256 documents, the photos): if the deployment's prediction cache "
            "is on, most requests after the first round are cache hits."
        )
    notes.append(
        "Triton direct runs in the benchmark process (tritonclient gRPC asyncio, one channel): "
        "its figures include that client's own cost, on the same cores."
    )
    return notes


def _session(options: BenchOptions, stack: Stack, work_dir: Path) -> Session:
    return Session(
        stack=stack,
        repository=options.repository,
        config_name=options.config_name,
        default_api=default_api_config(),
        overrides=Overrides(
            options.duration, options.warmup, options.concurrency, options.rates, options.rounds
        ),
        load_texts=lambda: newsgroups_texts(export_data_home(options.repository)),
        load_images=lambda: detection_images(options.images_dir, work_dir / "inputs"),
        api_headers=options.auth_headers(),
        timeout=options.timeout,
        local_repository=options.repository.is_dir(),
    )


def _windows(scenarios: list[Scenario], overrides: Overrides) -> dict[str, dict[str, float]]:
    windows = {}
    for scenario in scenarios:
        window = overrides.window(scenario.window)
        windows[scenario.key] = {"duration_s": window.duration, "warmup_s": window.warmup}
    return windows


def run_benchmarks(options: BenchOptions, log: Callable[[str], None] | None = None) -> Path:
    """Run ``options.scenarios`` and write the report; the report's directory."""
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    scenarios = select(list(options.scenarios))
    info = machine.machine_info()
    out_dir = output_directory(options, info, now)
    work_dir = options.work_dir / "bench"
    selected = {s.key for s in scenarios}
    yolos_source: dict[str, Any] | None = None
    if options.url is None and selected & {"detection", "streams"}:
        with contextlib.suppress(BookAssetsError):
            yolos_source = weights_source(options.repository)
    stack_settings = StackSettings(
        repository=options.repository,
        work_dir=work_dir,
        config_name=options.config_name,
        workers=options.workers,
        url=options.url,
        triton_url=options.triton_url,
        book_joblib=options.book_joblib or export_joblib(options.repository),
    )

    def book_yolos() -> Path:
        return prepare_book_yolos(options.repository, work_dir / "book-yolos")[0]

    with Stack(stack_settings, book_yolos=book_yolos) as stack, _terminate_as_interrupt():
        session = _session(options, stack, work_dir)
        records = [scenario.new_record() for scenario in scenarios]
        plans = [
            (scenario, record, scenario.plan(session, record))
            for scenario, record in zip(scenarios, records, strict=True)
        ]
        run = RunRecord(
            created=now.isoformat(),
            machine=info,
            configuration={},
            scenarios=records,
            notes=_notes(options, info, yolos_source),
        )
        total = sum(step.seconds for _, _, steps in plans for step in steps)
        with _ProgressBar(total, options.progress) as bar:
            say = log or bar.log
            stack.log = session.log = say
            if options.url:
                _check_remote(options, say)
            try:
                for scenario, record, steps in plans:
                    _run_scenario(scenario, record, steps, session, bar)
            except KeyboardInterrupt:
                run.interrupted = True
                say("interrupted: writing the report of what was measured")
            finally:
                bar.describe("stopping servers")
                stack.close()
        run.inputs = _inputs(session, selected)
        run.configuration = _configuration(options, session, _windows(scenarios, session.overrides))
    run.elapsed_s = round(time.monotonic() - started, 1)
    write_report(run, out_dir)
    return out_dir


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C: servers stopped, what was measured reported."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_remote(options: BenchOptions, say: Callable[[str], None]) -> None:
    assert options.url is not None
    try:
        wait_ready(f"{options.url.rstrip('/')}/health/ready", options.auth_headers(), 10.0)
    except TimeoutError as error:
        say(f"warning: the deployment is not ready: {error}")


def _run_scenario(
    scenario: Scenario,
    record: ScenarioRecord,
    steps: list[Step],
    session: Session,
    bar: _ProgressBar,
) -> None:
    session.record = record
    for step in steps:
        with bar.step(f"[{scenario.number}] {step.label}", step.seconds):
            try:
                record.measurements.extend(step.run(session))
            except Unavailable as reason:
                if str(reason) not in record.skipped:
                    record.skipped.append(str(reason))
            except Exception as error:
                message = f"{step.label}: {type(error).__name__}: {error}"
                record.errors.append(message)
                session.log(f"[red]error[/] {message}")
    record.checks = scenario.checks(record)
    for role in BASELINE_ROLES:
        session.stack.stop(role)


def _inputs(session: Session, selected: set[str]) -> dict[str, Any]:
    described: dict[str, Any] = {}
    if selected & {"text", "batching", "cache"}:
        described["texts"] = session.texts.source
    if selected & {"detection", "streams"}:
        described["images"] = session.images.source
    if "streams" in selected:
        described["frames"] = {
            "count": len(session.frames),
            "size": list(FRAME_SIZE),
            "jpeg_quality": JPEG_QUALITY,
            "bytes_mean": round(sum(map(len, session.frames)) / len(session.frames)),
        }
    return described
