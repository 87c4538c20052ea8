"""Synthetic benchmark runs for report, table and comparison tests.

Each measurement's summary is made by the real :class:`benchmarks.results.Recorder` from known
latencies, so the figures are those a run with those latencies would report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.records import Measurement, RunRecord, ScenarioRecord, latency_quantiles
from benchmarks.results import Recorder, RunInfo
from benchmarks.scenarios import SCENARIOS, SERIES_LABELS

ON = {"batching": True, "max_delay_us": 2000, "max_batch_size": 128}
OFF = {"batching": False, "max_delay_us": 2000, "max_batch_size": 128}


def load_measurement(
    scenario: str,
    series: str,
    *,
    rps: float,
    p50: float,
    clients: int | None = None,
    rate: float | None = None,
    config: dict[str, Any] | None = None,
    label: str | None = None,
    statuses: Sequence[int] = (),
    seconds: float = 2.0,
) -> Measurement:
    """``seconds`` of requests at ``rps``, latencies around ``p50`` (ms), plus ``statuses``."""
    recorder = Recorder()
    recorder.start_window(0.0)
    count = max(20, round(rps * seconds))
    latencies = np.linspace(0.5 * p50, 1.5 * p50, count)
    np.random.default_rng(0).shuffle(latencies)
    for index, latency in enumerate(latencies):
        scheduled = index / rps
        recorder.response(scheduled, scheduled, scheduled + latency / 1000.0, 200)
    for status in statuses:
        recorder.response(0.0, 0.0, 0.001, status)
    mode = "open" if rate is not None else "closed"
    info = RunInfo(
        mode, "http://127.0.0.1:1", "POST", "/prediction", 1.0, clients, rate, "poisson", 1024
    )
    result = recorder.result(
        info,
        planned_end=count / rps,
        connections_opened=clients or 1,
        retries=0,
        generator_cpu=0.2,
    )
    return Measurement(
        scenario=scenario,
        series=series,
        label=label or SERIES_LABELS[series],
        mode=result.mode,
        concurrency=clients,
        rate=rate,
        config=dict(config or {}),
        result=result.to_dict(),
        quantiles_ms=latency_quantiles(result.latencies_ms),
        cpu={"generator": 0.2, "api": 0.9, "triton": 0.5},
    )


def limit_measurement(scenario: str, batch: int, items_per_s: float, best: bool) -> Measurement:
    latency = {"count": 10, "mean_ms": 1.0, "p50_ms": 1.0, "p90_ms": 1.1, "p95_ms": 1.2}
    latency |= {"p99_ms": 1.3, "max_ms": 1.4, "min_ms": 0.9}
    return Measurement(
        scenario=scenario,
        series="limit",
        label=SERIES_LABELS["limit"],
        mode="in-process",
        config={"batch_size": batch, "best": best},
        result={"batch_size": batch, "items_per_s": items_per_s, "calls": 10, "latency": latency},
    )


def _record(key: str) -> ScenarioRecord:
    return SCENARIOS[key].new_record()


def text_record(api_rps_64: float = 4000.0, api_p50_1: float = 1.6) -> ScenarioRecord:
    record = _record("text")
    figures = {
        "api": {1: (600.0, api_p50_1), 64: (api_rps_64, 14.0)},
        "triton_direct": {1: (800.0, 1.25), 64: (5000.0, 12.0)},
        "book": {1: (900.0, 1.1), 64: (1000.0, 70.0)},
        "noop": {1: (6000.0, 0.15), 64: (10000.0, 6.0)},
    }
    for clients in (1, 64):
        for series, points in figures.items():
            rps, p50 = points[clients]
            record.measurements.append(
                load_measurement("text", series, rps=rps, p50=p50, clients=clients)
            )
    record.measurements += [
        limit_measurement("text", 1, 7000.0, False),
        limit_measurement("text", 8, 7500.0, True),
    ]
    record.checks = SCENARIOS["text"].checks(record)
    return record


def detection_record() -> ScenarioRecord:
    record = _record("detection")
    for clients in (1, 4):
        record.measurements.append(
            load_measurement("detection", "api", rps=8.0, p50=120.0 * clients, clients=clients)
        )
        record.measurements.append(
            load_measurement("detection", "book", rps=6.0, p50=160.0 * clients, clients=clients)
        )
    record.measurements.append(limit_measurement("detection", 1, 8.5, True))
    return record


def batching_record() -> ScenarioRecord:
    record = _record("batching")
    add = record.measurements.append
    for clients, on_rps, off_rps in ((16, 3000.0, 1500.0), (64, 4000.0, 1600.0)):
        add(load_measurement("batching", "api", rps=on_rps, p50=5.0, clients=clients, config=ON))
        add(
            load_measurement(
                "batching",
                "api",
                rps=off_rps,
                p50=20.0,
                clients=clients,
                config=OFF,
                statuses=(503,),
            )
        )
    for rate in (2000.0, 3600.0):
        add(load_measurement("batching", "api", rps=rate, p50=4.0, rate=rate, config=ON))
        add(load_measurement("batching", "api", rps=1500.0, p50=300.0, rate=rate, config=OFF))
    for delay, rps in ((0, 3500.0), (500, 3800.0), (5000, 3900.0)):
        config = ON | {"max_delay_us": delay}
        add(load_measurement("batching", "api", rps=rps, p50=6.0, clients=64, config=config))
    for size, rps in ((8, 2500.0), (32, 3700.0)):
        config = ON | {"max_batch_size": size}
        add(load_measurement("batching", "api", rps=rps, p50=8.0, clients=64, config=config))
    return record


def generator_record() -> ScenarioRecord:
    record = _record("generator")
    record.measurements.append(
        load_measurement("generator", "raw_noop", rps=40000.0, p50=1.5, clients=64)
    )
    return record


def synthetic_run(scale: float = 1.0) -> RunRecord:
    """A complete run of every scenario; ``scale`` multiplies the API's text throughput."""
    machine = {
        "name": "testbox-2cpu",
        "cores": 2,
        "cpu_model": "Test CPU",
        "memory_gib": 4.0,
        "gpus": [],
        "os": "Linux",
        "python": "3.11",
        "packages": {"fastapi": "1"},
        "git": {"commit": "abc", "short_commit": "abc", "branch": "main", "dirty": False},
        "load_average_at_start": [0.1, 0.1, 0.1],
    }
    configuration = {
        "mode": "local stack started by the runner",
        "workers": 1,
        "api_default": ON,
        "api_auth": "open",
        "windows": {"text": {"duration_s": 5.0, "warmup_s": 1.0}},
        "triton": {"config_name": "cpu", "models": {}, "server": {"version": "2.51.0"}},
        "options": {"workers": 1},
        "environment": {},
    }
    return RunRecord(
        created="2026-01-01T00:00:00+00:00",
        machine=machine,
        configuration=configuration,
        inputs={"texts": {"count": 3, "kind": "built-in"}},
        scenarios=[
            generator_record(),
            text_record(api_rps_64=4000.0 * scale),
            detection_record(),
            batching_record(),
        ],
        notes=["a note"],
        elapsed_s=42.0,
    )
