"""What the runner records per measurement, against fast fake targets with known behaviour.

The HTTP measurements go through benchmarks.measure (the layer the scenarios call) to a fake
server; the limit baseline runs a fake model with known costs; the CPU meter watches a process
that spins.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import loadgen, tables
from benchmarks.baselines.limit import make_batches, measure_calls, measure_limit
from benchmarks.cpu_usage import (
    GENERATOR,
    OTHER,
    STOLEN,
    CpuMeter,
    MachineCpu,
    MachineMeter,
    group_cpu_seconds,
    machine_cpu_seconds,
)
from benchmarks.measure import Point, Window, failed, http_closed, http_open
from benchmarks.payloads import get, post_json
from benchmarks.records import QUANTILES, Measurement
from benchmarks.servers import free_port
from serving.ort_runtime import RequestError
from tests.unit.benchmarks.fake_http_server import FakeHttpServer, Reply, constant, json_directed

POINT = Point("text", "api", "API", {"batching": True})


def test_closed_loop_measurement_counts_errors_by_status_and_keeps_the_distribution() -> None:
    delays = [2.0, 4.0, 6.0, 8.0, 10.0]
    bodies = [{"delay_ms": d} for d in delays] * 4 + [{"status": 503}, {"status": 429}]
    with FakeHttpServer(json_directed) as server:
        m = http_closed(
            POINT,
            server.url,
            post_json("/prediction", bodies),
            concurrency=1,
            window=Window(duration=1.0, warmup=0.2),
            groups={},
            timeout=5.0,
        )
    assert m.ok and m.mode == "closed" and m.concurrency == 1 and m.config == {"batching": True}
    result = m.result
    assert result["errors"] == result["errors_by_status"]["503"] + result["errors_by_status"]["429"]
    assert set(result["errors_by_status"]) == {"503", "429"}
    assert tables.errors(m).startswith("429×") and "503×" in tables.errors(m)
    assert m.quantiles_ms is not None and len(m.quantiles_ms) == len(QUANTILES)
    assert m.quantiles_ms == sorted(m.quantiles_ms)
    assert m.latency("p50") == pytest.approx(m.quantiles_ms[QUANTILES.index(50)], abs=1e-3)
    # One client cycling through 2..10 ms: the median is the 6 ms request, plus transport.
    assert 6.0 <= (m.latency("p50") or 0.0) <= 9.0
    assert 10.0 <= (m.latency("max") or 0.0) <= 20.0
    assert m.cpu[GENERATOR] > 0.0  # the window started after the warm-up and was metered


def test_open_loop_measurement_keeps_its_rate() -> None:
    with FakeHttpServer(constant(Reply(delay=0.005))) as server:
        m = http_open(
            POINT,
            server.url,
            get("/x"),
            rate=300.0,
            window=Window(duration=1.0, warmup=0.2),
            groups={},
            timeout=5.0,
        )
    # Poisson arrivals (seed 0): the schedule, not 300 exactly, is what must be kept.
    offsets = itertools.takewhile(
        lambda t: t < 1.2, loadgen.arrival_offsets(300.0, "poisson", seed=0)
    )
    scheduled = sum(1 for t in offsets if t >= 0.2)
    assert m.mode == "open" and m.rate == 300.0 and m.concurrency is None
    assert m.result["sent"] == scheduled
    assert m.result["achieved_rate_rps"] == pytest.approx(scheduled / 1.0, rel=0.02)
    assert m.result["dropped"] == 0 and m.errors == 0


def test_a_failed_measurement_keeps_where_it_was() -> None:
    m = failed(POINT, ConnectionRefusedError("no server"), concurrency=4)
    assert not m.ok and m.throughput is None and m.latency("p99") is None
    assert m.error == "ConnectionRefusedError: no server" and m.concurrency == 4
    assert Measurement.from_dict(m.to_dict()) == m


def test_unreachable_target_is_counted_by_kind() -> None:
    m = http_closed(
        POINT,
        f"http://127.0.0.1:{free_port()}",
        get("/x"),
        concurrency=2,
        window=Window(duration=0.3, warmup=0.0),
        groups={},
        timeout=1.0,
    )
    assert m.throughput == 0.0 and set(m.result["errors_by_kind"]) == {"ConnectionRefusedError"}
    assert m.quantiles_ms is None


# -- the limit baseline ---------------------------------------------------------------------------


def test_measure_calls_times_each_call() -> None:
    figures = measure_calls(lambda _i: time.sleep(0.01), duration=0.3, warmup=0.05)
    assert 20 <= figures.calls <= 31
    assert 10.0 <= figures.latency.p50_ms <= 13.0
    assert figures.latency.count == figures.calls


class FakeModel:
    """Costs 2 ms per call plus 0.5 ms per row; at most 8 rows."""

    max_batch_size = 8

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.active_providers = ["CPUExecutionProvider"]

    def run_requests(self, requests: list[dict[str, np.ndarray]]) -> list[object]:
        (request,) = requests
        rows = int(request["x"].shape[0])
        self.rows.append(rows)
        time.sleep(0.002 + 0.0005 * rows)
        if rows == 3:
            return [RequestError("three is refused")]
        return [{"y": request["x"] * 2}]


def test_limit_finds_the_best_batch_and_skips_sizes_over_the_maximum() -> None:
    model = FakeModel()
    samples = [{"x": np.full((1, 2), i, dtype=np.float32)} for i in range(5)]
    seen: list[int] = []
    fake: Any = model
    limit = measure_limit(
        fake,
        "fake",
        "1",
        samples,
        (1, 8, 16),
        duration=0.2,
        warmup=0.02,
        preprocess=lambda _i: time.sleep(0.001),
        on_batch=seen.append,
    )
    assert seen == [1, 8] and set(model.rows) == {1, 8}
    assert [b.batch_size for b in limit.batches] == [1, 8]
    assert limit.best.batch_size == 8  # 8 rows in 6 ms beat 1 row in 2.5 ms
    assert limit.batch1 is not None and limit.best.items_per_s > 2 * limit.batch1.items_per_s
    assert limit.preprocess is not None and limit.preprocess.latency.p50_ms >= 1.0
    assert limit.to_dict()["best_batch_size"] == 8
    with pytest.raises(RequestError):
        measure_limit(fake, "fake", "1", samples, (3,), duration=0.05, warmup=0.0)


def test_batches_rotate_over_the_samples() -> None:
    samples = [{"x": np.array([[i]])} for i in range(3)]
    batches = make_batches(samples, 2, count=4)
    assert [b["x"].ravel().tolist() for b in batches] == [[0, 1], [2, 0], [1, 2]]


# -- CPU accounting ------------------------------------------------------------------------------


def test_cpu_meter_sees_a_busy_process_group() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        time.sleep(0.2)
        assert group_cpu_seconds({"spin": spinner.pid})["spin"] > 0.0
        meter = CpuMeter({"spin": spinner.pid, "nothing": 999_999_999})
        meter.start_at(0.1)
        time.sleep(0.6)
        used = meter.stop()
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.4 <= used["spin"] <= 1.1  # one busy thread: about a core
    assert used["nothing"] == 0.0
    assert used[GENERATOR] < 0.3  # this process slept


def test_cpu_meter_without_a_window_reports_nothing() -> None:
    meter = CpuMeter({})
    meter.start_at(10.0)
    assert meter.stop() == {}


def _proc_stat(path: Path, busy_ticks: int, steal_ticks: int) -> Path:
    # "cpu  user nice system idle iowait irq softirq steal guest guest_nice", then per-CPU lines;
    # busy = user + nice + system + irq + softirq.
    user, system = busy_ticks - busy_ticks // 4, busy_ticks // 4
    path.write_text(
        f"cpu  {user} 0 {system} 80000 70 0 0 {steal_ticks} 0 0\n"
        f"cpu0 {user // 2} 0 {system // 2} 40000 35 0 0 {steal_ticks // 2} 0 0\n"
    )
    return path


def test_machine_cpu_seconds_read_busy_and_steal(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    read = machine_cpu_seconds(_proc_stat(tmp_path / "stat", 8 * ticks, 3 * ticks))
    assert read == MachineCpu(busy=8.0, stolen=3.0)
    (tmp_path / "short").write_text("cpu  1 2 3 4\n")
    assert machine_cpu_seconds(tmp_path / "short") is None  # an old kernel: no steal column
    assert machine_cpu_seconds(tmp_path / "missing") is None


def test_machine_meter_reports_cores_busy_and_taken_over_the_window(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = _proc_stat(tmp_path / "stat", 0, 0)
    meter = MachineMeter(stat)
    meter.start()
    time.sleep(0.5)
    _proc_stat(stat, ticks // 2, ticks // 4)  # 0.5 CPU seconds busy, 0.25 stolen in ~0.5 s
    use = meter.stop()
    assert use is not None
    assert 0.8 <= use.busy <= 1.0 and 0.4 <= use.stolen <= 0.5
    assert use.other(measured=0.6) == pytest.approx(use.busy - 0.6)
    assert use.other(measured=5.0) == 0.0  # never negative
    assert MachineMeter(tmp_path / "missing").stop() is None  # never started
    unknown = MachineMeter(tmp_path / "missing")
    unknown.start()
    assert unknown.stop() is None


def test_cpu_meter_counts_other_processes_and_limit_calls_report_both() -> None:
    if machine_cpu_seconds() is None:
        pytest.skip("this kernel does not report steal time")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        time.sleep(0.2)
        meter = CpuMeter({})  # the spinner is not one of the measured groups
        meter.start()
        time.sleep(0.6)
        used = meter.stop()
        figures = measure_calls(lambda _i: time.sleep(0.01), duration=0.3, warmup=0.0)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.0 <= used[STOLEN] <= 2.0
    assert used[OTHER] >= 0.4  # one busy process outside the benchmark: about a core
    assert figures.stolen_cores is not None and figures.other_cores is not None
    assert figures.other_cores >= 0.4 and figures.to_dict()["other_cores"] == figures.other_cores
