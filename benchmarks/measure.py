"""One measurement of one target, turned into a :class:`benchmarks.records.Measurement`.

The same windows and percentile code everywhere: HTTP targets through
:mod:`benchmarks.loadgen` (closed or open loop), Triton over gRPC through
:mod:`benchmarks.baselines.triton_direct`, the model alone through
:mod:`benchmarks.baselines.limit`. While an HTTP or gRPC load runs, a
:class:`benchmarks.cpu_usage.CpuMeter` records the cores each running server and the generator
used during the measured window (after the warm-up).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import loadgen, ws_streams
from benchmarks.baselines import triton_direct
from benchmarks.baselines.limit import LimitResult
from benchmarks.cpu_usage import GENERATOR, OTHER, STOLEN, CpuMeter
from benchmarks.payloads import RequestSpec
from benchmarks.records import Measurement, latency_quantiles
from benchmarks.results import LoadResult


@dataclass(frozen=True)
class Window:
    """How long a load runs: ``warmup`` seconds not counted, then ``duration`` seconds."""

    duration: float
    warmup: float

    @property
    def seconds(self) -> float:
        return self.duration + self.warmup


@dataclass(frozen=True)
class Point:
    """Which measurement this is, for the report."""

    scenario: str
    series: str
    label: str
    config: Mapping[str, Any] | None = None


def _measurement(
    point: Point, result: LoadResult, cpu: dict[str, float], concurrency: int | None
) -> Measurement:
    return Measurement(
        scenario=point.scenario,
        series=point.series,
        label=point.label,
        mode=result.mode,
        concurrency=concurrency,
        rate=result.target_rate_rps,
        config=dict(point.config or {}),
        result=result.to_dict(),
        quantiles_ms=latency_quantiles(result.latencies_ms),
        cpu=cpu,
    )


def _metered(
    groups: Mapping[str, int], warmup: float, run: Callable[[], LoadResult]
) -> tuple[LoadResult, dict[str, float]]:
    meter = CpuMeter(groups)
    meter.start_at(warmup)
    try:
        result = run()
    finally:
        cpu = meter.stop()
    return result, cpu


def http_closed(
    point: Point,
    url: str,
    request: RequestSpec,
    *,
    concurrency: int,
    window: Window,
    groups: Mapping[str, int],
    timeout: float,
    on_response: loadgen.ResponseHook | None = None,
) -> Measurement:
    """``concurrency`` HTTP clients back to back against ``url`` (``on_response``: see loadgen)."""
    result, cpu = _metered(
        groups,
        window.warmup,
        lambda: loadgen.run(
            loadgen.closed_loop(
                url,
                request,
                concurrency=concurrency,
                duration=window.duration,
                warmup=window.warmup,
                timeout=timeout,
                on_response=on_response,
            )
        ),
    )
    return _measurement(point, result, cpu, concurrency)


def http_open(
    point: Point,
    url: str,
    request: RequestSpec,
    *,
    rate: float,
    window: Window,
    groups: Mapping[str, int],
    timeout: float,
    max_outstanding: int = 1024,
) -> Measurement:
    """Poisson arrivals at ``rate`` per second against ``url`` (latency from schedule)."""
    result, cpu = _metered(
        groups,
        window.warmup,
        lambda: loadgen.run(
            loadgen.open_loop(
                url,
                request,
                rate=rate,
                duration=window.duration,
                warmup=window.warmup,
                max_outstanding=max_outstanding,
                timeout=timeout,
            )
        ),
    )
    return _measurement(point, result, cpu, None)


def grpc_closed(
    point: Point,
    grpc_url: str,
    model: str,
    samples: Sequence[Mapping[str, np.ndarray]],
    *,
    concurrency: int,
    window: Window,
    groups: Mapping[str, int],
    timeout: float,
) -> Measurement:
    """``concurrency`` concurrent gRPC ``ModelInfer`` loops straight to Triton."""
    result, cpu = _metered(
        groups,
        window.warmup,
        lambda: loadgen.run(
            triton_direct.closed_loop(
                grpc_url,
                model,
                samples,
                concurrency=concurrency,
                duration=window.duration,
                warmup=window.warmup,
                timeout=timeout,
            )
        ),
    )
    return _measurement(point, result, cpu, concurrency)


def ws_streams_measurement(
    point: Point,
    url: str,
    frames: Sequence[bytes],
    *,
    streams: int,
    fps: float,
    window: Window,
    groups: Mapping[str, int],
    headers: Mapping[str, str],
    timeout: float,
) -> Measurement:
    """``streams`` WebSocket clients sending ``fps`` frames per second each (open loop)."""
    meter = CpuMeter(groups)
    meter.start_at(window.warmup + 0.2)  # ws_streams starts the first frame 0.2 s from now
    try:
        logs, start, end = loadgen.run(
            ws_streams.run_streams(
                url,
                frames,
                streams=streams,
                duration=window.duration,
                warmup=window.warmup,
                fps=fps,
                headers=headers,
                drain_timeout=min(timeout, 10.0),
            )
        )
    finally:
        cpu = meter.stop()
    result, round_trips_ms = ws_streams.result_dict(logs, start, end, fps=fps)
    result["generator_cpu"] = cpu.get(GENERATOR, 0.0)
    return Measurement(
        scenario=point.scenario,
        series=point.series,
        label=point.label,
        mode="open",
        concurrency=streams,
        rate=fps * streams,
        config=dict(point.config or {}),
        result=result,
        quantiles_ms=latency_quantiles(round_trips_ms),
        cpu=cpu,
    )


def limit_measurements(point: Point, limit: LimitResult) -> list[Measurement]:
    """One in-process measurement per batch size; ``config`` says which is batch 1 and best.

    ``cpu`` holds only, when known, the cores the hypervisor took away (``stolen``) and those
    used by processes other than this one (``other``): the model runs here, alone.
    """
    best = limit.best.batch_size
    measurements = []
    for figures in limit.batches:
        calls = figures.figures
        machine = {STOLEN: calls.stolen_cores, OTHER: calls.other_cores}
        result = figures.to_dict() | {
            "model": limit.model,
            "version": limit.version,
            "providers": list(limit.providers),
        }
        if limit.preprocess is not None:
            result["preprocess"] = limit.preprocess.to_dict()
        measurements.append(
            Measurement(
                scenario=point.scenario,
                series=point.series,
                label=point.label,
                mode="in-process",
                config=dict(point.config or {})
                | {"batch_size": figures.batch_size, "best": figures.batch_size == best},
                result=result,
                cpu={name: cores for name, cores in machine.items() if cores is not None},
            )
        )
    return measurements


def failed(point: Point, error: BaseException, **where: Any) -> Measurement:
    """A measurement that could not be made, with the reason."""
    return Measurement(
        scenario=point.scenario,
        series=point.series,
        label=point.label,
        mode=where.pop("mode", "closed"),
        concurrency=where.pop("concurrency", None),
        rate=where.pop("rate", None),
        config=dict(point.config or {}) | where,
        error=f"{type(error).__name__}: {error}",
    )
