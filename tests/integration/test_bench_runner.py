"""A short run of every benchmark scenario against the real stack writes a complete report.

One run (module fixture) on the exported test repository (tiny YOLOS) with tiny windows and low
concurrency: a local tritonserver, the API, the book's app (the export's joblib and the same tiny
YOLOS through transformers), the no-op app, Triton direct and the limit baseline. The tests then
read the report it wrote.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.runner import BenchOptions, run_benchmarks
from serving.settings import ServingSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report_dir(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bench")
    started = time.monotonic()
    directory = run_benchmarks(
        BenchOptions(
            scenarios=("text", "detection", "streams", "cache", "batching"),
            duration=0.5,
            warmup=0.2,
            concurrency=(1, 4),
            rounds=2,
            repository=exported_repository,
            work_dir=work / "work",
            images_dir=ServingSettings().images_dir,
            output_dir=work / "report",
            progress=False,
        ),
        log=lambda _message: None,
    )
    print(f"\nbenchmark smoke run: {time.monotonic() - started:.1f} s")
    return directory


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict[str, Any]:
    return dict(json.loads((report_dir / "report.json").read_text()))


def _scenario(report: dict[str, Any], key: str) -> dict[str, Any]:
    return next(s for s in report["scenarios"] if s["key"] == key)


def test_every_scenario_ran_without_errors(report: dict[str, Any]) -> None:
    assert [s["key"] for s in report["scenarios"]] == [
        "generator",
        "text",
        "detection",
        "streams",
        "cache",
        "batching",
    ]
    for scenario in report["scenarios"]:
        assert scenario["errors"] == [], scenario["key"]
        assert scenario["skipped"] == [], scenario["key"]
        for m in scenario["measurements"]:
            assert m["error"] is None, (scenario["key"], m["label"], m["error"])
            assert m["result"].get("errors", 0) == 0, (scenario["key"], m["label"], m["result"])
    assert not report["interrupted"]


def test_text_and_detection_measure_every_series(report: dict[str, Any]) -> None:
    for key, series in (
        ("text", {"api", "triton_direct", "book", "noop"}),
        ("detection", {"api", "triton_direct", "book"}),
    ):
        measured = {
            (m["series"], m["concurrency"])
            for m in _scenario(report, key)["measurements"]
            if m["mode"] == "closed"
        }
        assert measured == {(s, c) for s in series for c in (1, 4)}, key
        limits = [m for m in _scenario(report, key)["measurements"] if m["series"] == "limit"]
        assert limits and sum(m["config"]["best"] for m in limits) == 1
        for m in _scenario(report, key)["measurements"]:
            if m["mode"] == "closed":
                assert m["result"]["succeeded"] > 0, (key, m["series"], m["concurrency"])
    text_checks = _scenario(report, "text")["checks"]
    assert [c["name"] for c in text_checks] == [
        "throughput at 64 clients vs the book",
        "API overhead at 1 client",
    ]
    assert text_checks[0]["status"] == "NOT MEASURED"  # no 64-client point in this short run
    assert text_checks[1]["status"] in {"PASS", "FAIL"}


def test_batching_covers_on_off_open_loop_and_both_sweeps(report: dict[str, Any]) -> None:
    measurements = _scenario(report, "batching")["measurements"]
    configs = {json.dumps(m["config"], sort_keys=True) for m in measurements}
    assert any('"batching": false' in c for c in configs)
    assert {m["config"]["max_delay_us"] for m in measurements} == {0, 500, 2000, 5000}
    assert {m["config"]["max_batch_size"] for m in measurements} == {8, 32, 128}
    opened = [m for m in measurements if m["mode"] == "open"]
    assert len(opened) == 6 and all(m["rate"] > 0 for m in opened)


def test_streams_measure_every_stream_count_against_the_limit(report: dict[str, Any]) -> None:
    scenario = _scenario(report, "streams")
    streams = [m for m in scenario["measurements"] if m["series"] == "api"]
    assert [m["concurrency"] for m in streams] == [1, 1, 4, 4]
    for m in streams:
        result = m["result"]
        assert result["processed"] > 0 and len(result["per_stream"]) == m["concurrency"]
        assert result["processed"] + result["dropped"] == result["sent"]
        assert result["server_latency"]["p50_ms"] <= result["latency"]["p50_ms"]
        # Where the cores went, the hypervisor's and other processes' share included.
        assert set(m["cpu"]) >= {"generator", "api", "triton", "stolen", "other"}
    limits = [m for m in scenario["measurements"] if m["series"] == "limit"]
    assert all(set(m["cpu"]) == {"stolen", "other"} for m in limits)
    # Each bar's reference alternates with its streams: the reference first in round 1, the
    # streams first in round 2.
    order = [
        f"limit {m['config']['batch_size']} round {m['config']['round']}"
        if m["series"] == "limit"
        else f"{m['concurrency']} streams round {m['config']['round']}"
        for m in scenario["measurements"]
    ]
    assert order == [
        "limit 1 round 1",
        "1 streams round 1",
        "1 streams round 2",
        "limit 1 round 2",
        *(f"limit {b} round 1" for b in (2, 4, 8)),
        "4 streams round 1",
        "4 streams round 2",
        *(f"limit {b} round 2" for b in (2, 4, 8)),
    ]
    checks = scenario["checks"]
    assert [c["name"] for c in checks] == [
        "one stream vs the single-image model",
        "4 streams vs the batched model",
    ]
    # A verdict, or none on a machine that was not quiet; never "not measured".
    assert all(c["status"] in {"PASS", "FAIL", "UNSTABLE"} for c in checks)
    assert all(c["values"]["rounds_measured"] == 2 for c in checks)


def test_cache_hits_were_hits_and_misses_misses(report: dict[str, Any]) -> None:
    scenario = _scenario(report, "cache")
    measured = {(m["config"]["requests"], m["concurrency"]) for m in scenario["measurements"]}
    assert measured == {(kind, c) for kind in ("miss", "hit") for c in (1, 4)}
    for m in scenario["measurements"]:
        kind, result = m["config"]["requests"], m["result"]
        assert m["config"]["cache"] is True
        assert result["x_cache"] == {kind: result["succeeded"]} and result["succeeded"] > 0
        assert result["server_time"]["p50_ms"] > 0
    (check,) = scenario["checks"]
    assert check["status"] in {"PASS", "FAIL"} and "X-Cache" in check["detail"]


def test_the_report_is_complete(report_dir: Path, report: dict[str, Any]) -> None:
    markdown = (report_dir / "report.md").read_text()
    for text in (
        "## Headline",
        "| clients | API + Triton req/s |",
        "**All figures**",
        "**Limit: the model alone**",
        "**Batching on vs off**",
        "**Open loop**",
        "**Sweep of max_delay**",
        "**Sweep of the batch size",
        "## 3. Streaming detection over WebSocket",
        "**Per stream**",
        "## 4. Prediction cache: hit vs miss",
        "**Hit vs miss**",
        "## Configuration and inputs",
    ):
        assert text in markdown, text
    for name in (
        "text-throughput.png",
        "text-latency.png",
        "detection-throughput.png",
        "detection-latency.png",
        "batching.png",
    ):
        assert (report_dir / name).read_bytes().startswith(PNG_SIGNATURE), name
        assert f"]({name})" in markdown
    assert report["machine"]["cores"] >= 1 and report["machine"]["git"]["commit"]
    assert report["configuration"]["triton"]["server"]["version"]
    assert (report_dir / "report.json").stat().st_size < 1_000_000
