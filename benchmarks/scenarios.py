"""The named scenarios of ``tritongate bench`` and the configurations each one measures.

A :class:`Scenario` turns the session's options into a list of :class:`Step` (each a label, the
seconds it is expected to load the machine, and a function producing measurements) and, once its
steps have run, into :class:`~benchmarks.records.Check` results. Adding a scenario means writing
one subclass and listing it in :data:`SCENARIOS`; the runner and the JSON need no change (a new
``view`` needs its section in :mod:`benchmarks.views`).

=====  ============  ===========================================================================
no.    key           what
=====  ============  ===========================================================================
0      generator     the load generator's own ceiling against the raw no-op server
1      text          ``POST /prediction`` at 1, 4, 16, 64, 256 clients vs every baseline
2      detection     ``POST /object-detection`` (the shared photos) at 1, 4, 16 clients
3      streams       WebSocket ``/object-detection``: 1, 2, 4 camera streams at 24 fps each
4      cache         ``POST /prediction`` with the prediction cache on: misses vs hits
5      batching      front-end batching on vs off (Triton batches alone), open-loop queueing,
                     sweeps of ``max_delay`` and the batch size
=====  ============  ===========================================================================

Series (the targets): ``api`` (TritonGate API + Triton), ``triton_direct`` (gRPC straight to
Triton, same concurrency), ``book`` (the book's FastAPI app, model in-process), ``noop`` (the
same FastAPI + uvicorn stack answering a constant), ``limit`` (the model alone, in-process ONNX
Runtime) and ``raw_noop`` (the generator's ceiling).
"""

from __future__ import annotations

import dataclasses
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from benchmarks import loadgen
from benchmarks.bars import BAR_STREAMS, cache_check, four_streams_check, single_stream_check
from benchmarks.baselines.limit import load_model_config_dict, measure_limit
from benchmarks.cache_probe import ResponseTally, repeated_bodies, unique_bodies
from benchmarks.measure import (
    Point,
    Window,
    failed,
    grpc_closed,
    http_closed,
    http_open,
    limit_measurements,
    ws_streams_measurement,
)
from benchmarks.payloads import BodyFactory, RequestSpec, post_json, post_multipart
from benchmarks.records import Check, Measurement, ScenarioRecord
from benchmarks.session import Session, Tensors
from benchmarks.stack import ApiConfig, Unavailable
from benchmarks.stats import summarize_ms
from serving.detection import decode_image, preprocess
from serving.specs import NEWSGROUPS, YOLOS

SERIES_LABELS: Final = {
    "api": "TritonGate API + Triton",
    "triton_direct": "Triton direct (gRPC)",
    "book": "book design (FastAPI + model in-process)",
    "noop": "no-op (FastAPI + uvicorn, constant)",
    "limit": "limit (in-process ONNX Runtime)",
    "raw_noop": "raw no-op server",
}

# The performance bars of the REST issue, checked by the text scenario.
BAR_CLIENTS: Final = 64
BAR_THROUGHPUT_RATIO: Final = 2.0
BAR_SINGLE_CLIENT_OVERHEAD_MS: Final = 1.5
# Scenario 4's hits repeat this many documents.
CACHE_HIT_TEXTS: Final = 32


@dataclass(frozen=True)
class Step:
    """A unit of work: ``seconds`` is how long it is expected to load the machine (progress)."""

    label: str
    seconds: float
    run: Callable[[Session], list[Measurement]]


def guarded(point: Point, make: Callable[[], Measurement], **where: object) -> list[Measurement]:
    """``[make()]``, or a failed measurement holding the error; :class:`Unavailable` propagates."""
    try:
        return [make()]
    except Unavailable:
        raise
    except Exception as error:
        return [failed(point, error, **where)]


def unavailable_reason(session: Session, series: str) -> str | None:
    """Why ``series`` cannot be measured in this session, decided before running anything."""
    settings = session.stack.settings
    if series == "triton_direct" and settings.remote and not settings.triton_url:
        return "Triton direct: needs --triton-url (Triton's gRPC address) for a remote deployment"
    if series in {"book", "noop", "limit"} and settings.remote:
        return (
            f"{SERIES_LABELS[series]}: runs on this machine, not comparable with the remote "
            "deployment (--url)"
        )
    if series == "limit" and not session.local_repository:
        return f"{SERIES_LABELS[series]}: the model repository is not on this machine"
    return None


def limit_window(seconds: tuple[float, float], session: Session) -> Window:
    """The limit's window per batch size: ``(duration, warm-up)``, shortened by the overrides."""
    duration, warmup = seconds
    overrides = session.overrides
    return Window(
        duration=duration if overrides.duration is None else min(duration, overrides.duration),
        warmup=warmup if overrides.warmup is None else min(warmup, overrides.warmup),
    )


def limit_step(
    key: str,
    model_name: str,
    batches: tuple[int, ...],
    window: Window,
    tensors: Callable[[Session], Tensors],
    preprocess: Callable[[Session], Callable[[int], object] | None],
    round_number: int | None = None,
) -> Step:
    """The limit baseline of ``model_name`` (in-process ONNX Runtime) at each batch size;
    ``round_number`` when it alternates with the scenario's other points (streams)."""
    config = {"round": round_number} if round_number is not None else None
    point = Point(key, "limit", SERIES_LABELS["limit"], config)

    def run(session: Session) -> list[Measurement]:
        try:
            model, version = session.limit_model(model_name)
            limit = measure_limit(
                model,
                model_name,
                version,
                tensors(session),
                batches,
                duration=window.duration,
                warmup=window.warmup,
                preprocess=preprocess(session),
            )
        except Exception as error:
            return [failed(point, error, mode="in-process")]
        return limit_measurements(point, limit)

    when = f", batch {'/'.join(map(str, batches))}, round {round_number}" if config else ""
    name = f"{key} · limit (in-process ONNX Runtime{when})"
    return Step(name, len(batches) * window.seconds, run)


class Scenario(ABC):
    """A named benchmark scenario (see the module docstring)."""

    key: ClassVar[str]
    number: ClassVar[int]
    title: ClassVar[str]
    description: ClassVar[str]
    view: ClassVar[str]  # how the report presents it: "ceiling", "concurrency" or "batching"
    window: ClassVar[Window]

    def new_record(self) -> ScenarioRecord:
        return ScenarioRecord(self.key, self.number, self.title, self.description)

    @abstractmethod
    def plan(self, session: Session, record: ScenarioRecord) -> list[Step]:
        """The steps to run; parts that cannot run are noted in ``record.skipped``."""

    def checks(self, record: ScenarioRecord) -> list[Check]:
        """Pass/fail bars decided on the scenario's measurements (none by default)."""
        return []


# -- 0: the generator's ceiling ------------------------------------------------------------------


class GeneratorCeiling(Scenario):
    key = "generator"
    number = 0
    title = "Load generator ceiling"
    description = (
        "GET /noop against a raw asyncio server that answers a constant: the most requests per "
        "second this generator can produce on this machine. Every HTTP figure below is bounded by "
        "it; a target measured near it (or with the generator at ~1 core) is generator-bound."
    )
    view = "ceiling"
    window = Window(duration=3.0, warmup=0.5)

    def plan(self, session: Session, record: ScenarioRecord) -> list[Step]:
        window = session.overrides.window(self.window)
        top = max(session.overrides.concurrencies((16, 256)))
        levels = sorted({16, top}) if top > 16 else [top]

        def step(concurrency: int) -> Step:
            point = Point(self.key, "raw_noop", SERIES_LABELS["raw_noop"])

            def run(session: Session) -> list[Measurement]:
                url = session.stack.raw_noop_url()
                return guarded(
                    point,
                    lambda: http_closed(
                        point,
                        url,
                        RequestSpec("GET", "/noop"),
                        concurrency=concurrency,
                        window=window,
                        groups=session.groups(),
                        timeout=session.timeout,
                    ),
                    concurrency=concurrency,
                )

            return Step(f"generator ceiling · {concurrency} clients", window.seconds, run)

        return [step(c) for c in levels]


# -- 1 and 2: a model over REST against every baseline ------------------------------------------


class ModelOverRest(Scenario):
    """One model's endpoint at increasing concurrency, side by side with the baselines.

    For each concurrency, every series is measured in turn (API, Triton direct, book, no-op), so
    slow drifts of a shared machine affect them alike. The limit baseline runs first.
    """

    view = "concurrency"
    model: ClassVar[str]
    concurrency: ClassVar[tuple[int, ...]]
    series: ClassVar[tuple[str, ...]]
    limit_batches: ClassVar[tuple[int, ...]]
    limit_seconds: ClassVar[tuple[float, float]]  # per batch size: (duration, warm-up)

    @abstractmethod
    def api_request(self, session: Session) -> RequestSpec: ...

    @abstractmethod
    def baseline_request(self, session: Session) -> RequestSpec: ...

    @abstractmethod
    def tensors(self, session: Session) -> Tensors: ...

    @abstractmethod
    def book_url(self, session: Session) -> str: ...

    def preprocess_call(self, session: Session) -> Callable[[int], object] | None:
        return None

    def plan(self, session: Session, record: ScenarioRecord) -> list[Step]:
        available = []
        for series in ("limit", *self.series):
            reason = unavailable_reason(session, series)
            if reason is None:
                available.append(series)
            else:
                record.skipped.append(reason)
        steps = []
        if "limit" in available:
            steps.append(self._limit_step(session))
        window = session.overrides.window(self.window)
        for concurrency in session.overrides.concurrencies(self.concurrency):
            for series in self.series:
                if series in available:
                    steps.append(self._load_step(series, concurrency, window))
        return steps

    def _limit_step(self, session: Session) -> Step:
        return limit_step(
            self.key,
            self.model,
            self.limit_batches,
            limit_window(self.limit_seconds, session),
            self.tensors,
            self.preprocess_call,
        )

    def _load_step(self, series: str, concurrency: int, window: Window) -> Step:
        point = Point(self.key, series, SERIES_LABELS[series])

        def run(session: Session) -> list[Measurement]:
            groups = session.groups
            if series == "triton_direct":
                grpc_url = session.stack.triton_url()
                return guarded(
                    point,
                    lambda: grpc_closed(
                        point,
                        grpc_url,
                        self.model,
                        self.tensors(session),
                        concurrency=concurrency,
                        window=window,
                        groups=groups(),
                        timeout=session.timeout,
                    ),
                    concurrency=concurrency,
                )
            if series == "api":
                url = session.stack.api_url(session.default_api)
                request = self.api_request(session)
            elif series == "book":
                url = self.book_url(session)
                request = self.baseline_request(session)
            else:
                url = session.stack.noop_url()
                request = self.baseline_request(session)
            return guarded(
                point,
                lambda: http_closed(
                    point,
                    url,
                    request,
                    concurrency=concurrency,
                    window=window,
                    groups=groups(),
                    timeout=session.timeout,
                ),
                concurrency=concurrency,
            )

        return Step(f"{self.key} · {series} · {concurrency} clients", window.seconds, run)


class TextOverRest(ModelOverRest):
    key = "text"
    number = 1
    title = "Text classification over REST"
    description = (
        "POST /prediction with 20 Newsgroups test documents, closed loop at each concurrency: "
        "the TritonGate API (front-end batching, Triton over gRPC) side by side with Triton "
        "direct, the book's design and the no-op stack; the limit is the model alone."
    )
    window = Window(duration=5.0, warmup=1.0)
    model = NEWSGROUPS.name
    concurrency = (1, 4, 16, 64, 256)
    series = ("api", "triton_direct", "book", "noop")
    limit_batches = (1, 8, 32, 64, 128)
    limit_seconds = (2.0, 0.5)

    def api_request(self, session: Session) -> RequestSpec:
        return post_json("/prediction", session.texts.json_payloads(), session.api_headers)

    def baseline_request(self, session: Session) -> RequestSpec:
        return post_json("/prediction", session.texts.json_payloads())

    def tensors(self, session: Session) -> Tensors:
        return session.text_tensors

    def book_url(self, session: Session) -> str:
        return session.stack.book_url(with_yolos=False)

    def checks(self, record: ScenarioRecord) -> list[Check]:
        return [throughput_check(record), single_client_check(record)]


class DetectionOverRest(ModelOverRest):
    key = "detection"
    number = 2
    title = "Object detection over REST"
    description = (
        "POST /object-detection (multipart upload) rotating over the shared photos, closed loop "
        "at each concurrency: the TritonGate API side by side with Triton direct (tensors "
        "pre-processed once, so without decoding) and the book's design (PyTorch YOLOS through "
        "transformers, same weights and 640 × 480 frame); the limit is the model alone."
    )
    window = Window(duration=10.0, warmup=3.0)
    model = YOLOS.name
    concurrency = (1, 4, 16)
    series = ("api", "triton_direct", "book")
    limit_batches = (1, 2, 4, 8)
    limit_seconds = (4.0, 1.0)

    def api_request(self, session: Session) -> RequestSpec:
        return post_multipart(
            "/object-detection", session.images.files, headers=session.api_headers
        )

    def baseline_request(self, session: Session) -> RequestSpec:
        return post_multipart("/object-detection", session.images.files)

    def tensors(self, session: Session) -> Tensors:
        return session.image_tensors

    def book_url(self, session: Session) -> str:
        return session.stack.book_url(with_yolos=True)

    def preprocess_call(self, session: Session) -> Callable[[int], object]:
        files = session.images.files

        def call(index: int) -> object:
            return preprocess(decode_image(files[index % len(files)].content))

        return call


# -- 5: front-end batching -------------------------------------------------------------------------


class Batching(Scenario):
    """Front-end micro-batching of the text model, against Triton batching alone.

    1. Batching on (the configured max_delay) and off, closed loop at each concurrency.
    2. Both in open loop (Poisson arrivals) at fixed rates: by default 25 %, 50 % and 75 % of the
       best closed-loop throughput with batching on, so queueing shows as the load grows (the
       open loop costs the generator more than the closed loop, and batching off saturates
       earlier: the top rate may overload a configuration, which is what it is there to show).
    3. ``max_delay`` sweep and batch-size sweep (the newsgroups ``max_batch_size``, Triton's and
       therefore the front end's) at one concurrency, batching on.
    """

    key = "batching"
    number = 5
    title = "Front-end batching on vs off, max_delay and batch size"
    description = (
        "POST /prediction through the API with front-end micro-batching on and off (off: every "
        "request goes to Triton alone and Triton's dynamic batcher merges them), closed loop and "
        "open loop (fixed Poisson rates expose queueing), then sweeps of the batcher's max_delay "
        "and of the batch size at one concurrency."
    )
    view = "batching"
    window = Window(duration=5.0, warmup=1.0)
    concurrency = (16, 64, 256)
    rate_fractions = (0.25, 0.5, 0.75)
    delays_us = (0, 500, 2000, 5000)
    batch_sizes = (8, 32, 128)
    sweep_clients = 64

    def plan(self, session: Session, record: ScenarioRecord) -> list[Step]:
        settings = session.stack.settings
        if settings.remote:
            record.skipped.append(
                "batching on/off and the sweeps restart the API with other settings, which a "
                "remote deployment (--url) does not allow: run a report per configuration and "
                "compare them (`tritongate bench compare`)"
            )
            return []
        window = session.overrides.window(self.window)
        levels = session.overrides.concurrencies(self.concurrency)
        sweep_at = self.sweep_clients if self.sweep_clients in levels else max(levels)
        on = dataclasses.replace(session.default_api, batching=True)
        off = dataclasses.replace(on, batching=False)
        steps: list[Step] = []
        for config in (on, off):
            steps += [self._closed(config, c, window) for c in levels]
            steps += self._open_steps(session, config, on, window)
        for delay in self.delays_us:
            if delay != on.max_delay_us:
                config = dataclasses.replace(on, max_delay_us=delay)
                steps.append(self._closed(config, sweep_at, window))
        repository_size = repository_batch_size(session)
        if settings.triton_url:
            record.skipped.append(
                "batch-size sweep: needs a local Triton whose configuration the runner controls "
                "(an external Triton was given)"
            )
        else:
            for size in self.batch_sizes:
                if size != repository_size:
                    config = dataclasses.replace(on, max_batch_size=size)
                    steps.append(self._closed(config, sweep_at, window))
        return steps

    @staticmethod
    def _config_dict(session: Session, config: ApiConfig) -> dict[str, object]:
        size = config.max_batch_size or repository_batch_size(session)
        return config.to_dict() | {"max_batch_size": size}

    def _closed(self, config: ApiConfig, concurrency: int, window: Window) -> Step:
        def run(session: Session) -> list[Measurement]:
            point = Point(self.key, "api", config.label, self._config_dict(session, config))
            url = session.stack.api_url(config)
            return guarded(
                point,
                lambda: http_closed(
                    point,
                    url,
                    post_json("/prediction", session.texts.json_payloads(), session.api_headers),
                    concurrency=concurrency,
                    window=window,
                    groups=session.groups(),
                    timeout=session.timeout,
                ),
                concurrency=concurrency,
            )

        return Step(f"batching · {config.label} · {concurrency} clients", window.seconds, run)

    def _open_steps(
        self, session: Session, config: ApiConfig, reference: ApiConfig, window: Window
    ) -> list[Step]:
        fixed = session.overrides.rates
        count = len(fixed) if fixed else len(self.rate_fractions)

        def step(index: int) -> Step:
            def run(session: Session) -> list[Measurement]:
                point = Point(self.key, "api", config.label, self._config_dict(session, config))
                rate = fixed[index] if fixed else self._rate(session, reference, index)
                if rate is None:
                    error = RuntimeError("no closed-loop capacity measured to derive a rate from")
                    return [failed(point, error, mode="open")]
                url = session.stack.api_url(config)
                return guarded(
                    point,
                    lambda: http_open(
                        point,
                        url,
                        post_json(
                            "/prediction", session.texts.json_payloads(), session.api_headers
                        ),
                        rate=rate,
                        window=window,
                        groups=session.groups(),
                        timeout=session.timeout,
                    ),
                    mode="open",
                    rate=rate,
                )

            return Step(f"batching · {config.label} · open loop #{index + 1}", window.seconds, run)

        return [step(i) for i in range(count)]

    def _rate(self, session: Session, reference: ApiConfig, index: int) -> float | None:
        """``rate_fractions[index]`` of the best closed-loop throughput of ``reference``."""
        record = session.record
        if record is None:
            return None
        wanted = self._config_dict(session, reference)
        capacity = [
            m.throughput
            for m in record.measurements
            if m.mode == "closed" and m.ok and m.config == wanted and m.throughput
        ]
        if not capacity:
            return None
        return round(max(c for c in capacity if c is not None) * self.rate_fractions[index], -1)


# -- 3: WebSocket streams --------------------------------------------------------------------------


class Streams(Scenario):
    """Camera streams over the WebSocket endpoint against the model alone.

    The bars are shares of the limit baseline (YOLOS in-process) measured in the same run, in
    rounds: each round measures the reference (batch 1 for the single stream, batches 2, 4 and 8
    for the 4 streams) and the streams, the reference first in odd rounds and last in even ones,
    and the rounds repeat. The machines these reports come from lose up to 30 % of their CPU to
    other guests for tens of seconds at a time (steal time), so a reference measured a minute
    away from its streams may have run on a different machine, in effect. The bars
    (:mod:`benchmarks.bars`) take each quiet round's streams over its own reference and decide on
    the median of those shares; other stream counts come last, once.
    """

    key = "streams"
    number = 3
    title = "Streaming detection over WebSocket"
    description = (
        "WebSocket /object-detection: 1, 2 and 4 concurrent streams, each sending the shared "
        "photos as 640 × 480 JPEG camera frames (quality 85, like the page) at 24 fps, open loop "
        "(a frame is sent on schedule whatever the replies); the server keeps only the newest "
        "waiting frame of a stream. The limit is the model alone (in-process ONNX Runtime), "
        "measured in rounds alternating with the streams of each bar."
    )
    view = "streams"
    # A stream's rate runs from its first result in the window to its last (benchmarks/
    # ws_streams.py), so 8 s holds enough batch cycles (about 1.3 s each with 4 streams); more,
    # shorter rounds average the machine's drift better than fewer long ones.
    window = Window(duration=8.0, warmup=2.0)
    model = YOLOS.name
    streams = (1, 2, 4)
    fps = 24.0
    rounds = 6
    limit_batches = (1, 2, 4, 8)
    limit_seconds = (3.0, 1.0)  # at least three calls are measured: batch 8 takes about 8 s

    def plan(self, session: Session, record: ScenarioRecord) -> list[Step]:
        reason = unavailable_reason(session, "limit")
        if reason is not None:
            record.skipped.append(reason)

        def limit(batches: tuple[int, ...], round_number: int) -> list[Step]:
            if reason is not None or not batches:
                return []
            return [
                limit_step(
                    self.key,
                    self.model,
                    batches,
                    limit_window(self.limit_seconds, session),
                    lambda session: session.image_tensors,
                    lambda _session: None,
                    round_number,
                )
            ]

        window = session.overrides.window(self.window)
        counts = session.overrides.concurrencies(self.streams)
        rounds = session.overrides.round_count(self.rounds)
        single = tuple(b for b in self.limit_batches if b == 1)
        batched = tuple(b for b in self.limit_batches if b > 1)
        steps: list[Step] = []
        for n, batches in ((1, single), (BAR_STREAMS, batched)):
            if n in counts:
                for r in range(1, rounds + 1):
                    pair = [*limit(batches, r), self._streams_step(n, window, r)]
                    # Odd rounds measure the reference first, even rounds the streams first:
                    # a drift of the machine's speed across a round then favours neither.
                    steps += pair if r % 2 else pair[::-1]
        others = [self._streams_step(n, window) for n in counts if n not in (1, BAR_STREAMS)]
        return steps + others

    def _streams_step(self, streams: int, window: Window, round_number: int | None = None) -> Step:
        config = {"round": round_number} if round_number is not None else None
        point = Point(self.key, "api", f"{streams} stream(s) × {self.fps:g} fps", config)

        def run(session: Session) -> list[Measurement]:
            base = session.stack.api_url(session.default_api)
            url = "ws" + base.removeprefix("http") + "/object-detection"
            return guarded(
                point,
                lambda: ws_streams_measurement(
                    point,
                    url,
                    session.frames,
                    streams=streams,
                    fps=self.fps,
                    window=window,
                    groups=session.groups(),
                    headers=session.api_headers,
                    timeout=session.timeout,
                ),
                mode="open",
                concurrency=streams,
                rate=self.fps * streams,
            )

        when = f", round {round_number}" if round_number is not None else ""
        label = f"streams · {streams} × {self.fps:g} fps{when}"
        return Step(label, window.seconds + 0.5, run)

    def checks(self, record: ScenarioRecord) -> list[Check]:
        return [single_stream_check(record), four_streams_check(record)]


# -- 4: the prediction cache -----------------------------------------------------------------------


class CacheHitMiss(Scenario):
    """``POST /prediction`` with the prediction cache on: every request a miss, then all hits."""

    key = "cache"
    number = 4
    title = "Prediction cache: hit vs miss"
    description = (
        "POST /prediction through the API with its prediction cache on (in-process LRU), closed "
        "loop at each concurrency: misses (every request a text never sent before) and hits "
        f"(the first {CACHE_HIT_TEXTS} documents, each requested once to warm the cache, then "
        "repeated). Server time is the API's X-Process-Time header; X-Cache is counted to show "
        "that hits were hits and misses were misses."
    )
    view = "cache"
    window = Window(duration=5.0, warmup=1.0)
    concurrency = (1, 16)

    def plan(self, session: Session, record: ScenarioRecord) -> list[Step]:
        if session.remote:
            record.skipped.append(
                "cache hit vs miss restarts the API with its cache on, which a remote deployment "
                "(--url) does not allow"
            )
            return []
        config = dataclasses.replace(session.default_api, cache=True)
        window = session.overrides.window(self.window)
        steps = []
        for concurrency in session.overrides.concurrencies(self.concurrency):
            steps += [self._step(config, kind, concurrency, window) for kind in ("miss", "hit")]
        return steps

    def _step(self, config: ApiConfig, kind: str, concurrency: int, window: Window) -> Step:
        point = Point(self.key, "api", f"cache {kind}", config.to_dict() | {"requests": kind})

        def run(session: Session) -> list[Measurement]:
            url = session.stack.api_url(config)
            documents = session.texts.texts
            if kind == "miss":
                body = unique_bodies(documents, f"{uuid.uuid4().hex[:12]}-c{concurrency}")
            else:
                body = repeated_bodies(documents, CACHE_HIT_TEXTS)
                warm = json_spec(body, session)
                loadgen.run(
                    loadgen.closed_loop(
                        url, warm, concurrency=1, requests=len(body), timeout=session.timeout
                    )
                )
            tally = ResponseTally()
            return guarded(
                point,
                lambda: with_server_time(
                    http_closed(
                        point,
                        url,
                        json_spec(body, session),
                        concurrency=concurrency,
                        window=window,
                        groups=session.groups(),
                        timeout=session.timeout,
                        on_response=tally,
                    ),
                    tally,
                ),
                concurrency=concurrency,
            )

        return Step(f"cache · {kind} · {concurrency} clients", window.seconds, run)

    def checks(self, record: ScenarioRecord) -> list[Check]:
        return [cache_check(record)]


def json_spec(body: BodyFactory, session: Session) -> RequestSpec:
    """``POST /prediction`` with ``body`` and the session's credentials."""
    return RequestSpec("POST", "/prediction", body, "application/json", dict(session.api_headers))


def with_server_time(measurement: Measurement, tally: ResponseTally) -> Measurement:
    """``measurement`` with the server time (X-Process-Time) and X-Cache counts of ``tally``."""
    measurement.result["server_time"] = summarize_ms(tally.server_ms).to_dict()
    measurement.result.update(tally.to_dict())
    return measurement


def repository_batch_size(session: Session) -> int:
    """The newsgroups ``max_batch_size`` of the repository's configuration in use."""
    return int(
        load_model_config_dict(session.repository, NEWSGROUPS.name, session.config_name).get(
            "max_batch_size", 0
        )
    )


# -- checks ---------------------------------------------------------------------------------------


def throughput_check(record: ScenarioRecord) -> Check:
    """At 64 clients the API + Triton gets ≥ 2× the book's req/s, with a lower p99."""
    bar = (
        f"at {BAR_CLIENTS} concurrent clients, /prediction through the API and Triton reaches at "
        f"least {BAR_THROUGHPUT_RATIO:g}× the requests per second of the book's design, with lower "
        "p99 latency"
    )
    api = record.one("api", concurrency=BAR_CLIENTS)
    book = record.one("book", concurrency=BAR_CLIENTS)
    name = f"throughput at {BAR_CLIENTS} clients vs the book"
    if api is None or book is None or not api.throughput or not book.throughput:
        missing = ", ".join(
            label for label, m in (("API", api), ("book", book)) if m is None or not m.throughput
        )
        return Check(name, bar, "NOT MEASURED", f"not measured at {BAR_CLIENTS} clients: {missing}")
    ratio = api.throughput / book.throughput
    api_p99, book_p99 = api.latency("p99"), book.latency("p99")
    lower = api_p99 is not None and book_p99 is not None and api_p99 < book_p99
    passed = ratio >= BAR_THROUGHPUT_RATIO and lower
    detail = (
        f"at {BAR_CLIENTS} clients: API + Triton {api.throughput:,.0f} req/s vs book "
        f"{book.throughput:,.0f} req/s = {ratio:.2f}× (bar ≥ {BAR_THROUGHPUT_RATIO:g}×); p99 "
        f"{_ms(api_p99)} vs {_ms(book_p99)} (bar: lower)"
    )
    if api.errors or book.errors:
        detail += f"; errors: API {api.errors}, book {book.errors}"
    return Check(
        name,
        bar,
        "PASS" if passed else "FAIL",
        detail,
        {
            "api_rps": api.throughput,
            "book_rps": book.throughput,
            "ratio": ratio,
            "api_p99_ms": api_p99,
            "book_p99_ms": book_p99,
        },
    )


def single_client_check(record: ScenarioRecord) -> Check:
    """At one client the API adds at most 1.5 ms to Triton direct's p50."""
    bar = (
        f"at 1 client, the API adds at most {BAR_SINGLE_CLIENT_OVERHEAD_MS:g} ms to the p50 of "
        "calling Triton directly"
    )
    name = "API overhead at 1 client"
    api = record.one("api", concurrency=1)
    direct = record.one("triton_direct", concurrency=1)
    api_p50 = api.latency("p50") if api else None
    direct_p50 = direct.latency("p50") if direct else None
    if api_p50 is None or direct_p50 is None:
        missing = ", ".join(
            label
            for label, value in (("API", api_p50), ("Triton direct", direct_p50))
            if value is None
        )
        return Check(name, bar, "NOT MEASURED", f"not measured at 1 client: {missing}")
    added = api_p50 - direct_p50
    passed = added <= BAR_SINGLE_CLIENT_OVERHEAD_MS
    detail = (
        f"at 1 client: API p50 {api_p50:.2f} ms − Triton direct p50 {direct_p50:.2f} ms = "
        f"{added:+.2f} ms (bar ≤ {BAR_SINGLE_CLIENT_OVERHEAD_MS:g} ms)"
    )
    return Check(
        name,
        bar,
        "PASS" if passed else "FAIL",
        detail,
        {"api_p50_ms": api_p50, "triton_direct_p50_ms": direct_p50, "added_ms": added},
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


# -- the registry ---------------------------------------------------------------------------------

SCENARIOS: Final[dict[str, Scenario]] = {
    scenario.key: scenario
    for scenario in (
        GeneratorCeiling(),
        TextOverRest(),
        DetectionOverRest(),
        Streams(),
        CacheHitMiss(),
        Batching(),
    )
}
DEFAULT_SCENARIOS: Final = ("text", "detection", "streams", "cache", "batching")


def select(names: list[str] | tuple[str, ...]) -> list[Scenario]:
    """Scenarios by key or number (``all`` for the defaults); the generator ceiling always first."""
    chosen: list[Scenario] = [SCENARIOS["generator"]]
    by_number = {str(s.number): s for s in SCENARIOS.values()}
    wanted = list(DEFAULT_SCENARIOS) if not names or "all" in names else list(names)
    for name in wanted:
        scenario = SCENARIOS.get(name) or by_number.get(name)
        if scenario is None:
            known = ", ".join(SCENARIOS)
            raise ValueError(f"unknown scenario {name!r}; known: {known}, or all")
        if scenario not in chosen:
            chosen.append(scenario)
    return chosen
