"""The streams and cache bars (benchmarks.bars) and their report sections (benchmarks.views)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.bars import cache_check, four_streams_check, single_stream_check
from benchmarks.cpu_usage import OTHER, STOLEN
from benchmarks.records import Measurement, RunRecord, ScenarioRecord
from benchmarks.report import render_markdown
from benchmarks.scenarios import SCENARIOS
from tests.unit.benchmarks.synthetic import limit_measurement


def _summary(p50: float, p95: float) -> dict[str, float]:
    return {"count": 50, "mean_ms": p50, "p50_ms": p50, "p90_ms": p95, "p95_ms": p95}


def stream_measurement(streams: int, fps: float, p95_ms: float) -> Measurement:
    per = {
        "sent": 240,
        "processed": round(fps * 10 / streams),
        "fps": fps / streams,
        "dropped": 200,
        "dropped_reported": 200,
        "unanswered": 0,
        "latency": _summary(p95_ms * 0.8, p95_ms),
        "server_latency": _summary(p95_ms * 0.75, p95_ms * 0.95),
    }
    result: dict[str, Any] = {
        "throughput_rps": fps,
        "sent": 240 * streams,
        "dropped": 200 * streams,
        "errors": 0,
        "errors_by_kind": {},
        "latency": _summary(p95_ms * 0.8, p95_ms),
        "server_latency": _summary(p95_ms * 0.75, p95_ms * 0.95),
        "per_stream": [per | {"stream": k + 1} for k in range(streams)],
    }
    return Measurement(
        "streams", "api", f"{streams} stream(s)", "open", streams, 24.0 * streams,
        result=result, cpu={"generator": 0.05, "api": 0.1, "triton": 1.5},
    )  # fmt: skip


def streams_record(one_fps: float, p95_ms: float, four_fps: float) -> ScenarioRecord:
    record = SCENARIOS["streams"].new_record()
    record.measurements += [
        limit_measurement("streams", 1, 8.0, best=False),  # batch-1 call p50: 1.0 ms
        limit_measurement("streams", 8, 10.0, best=True),
        stream_measurement(1, one_fps, p95_ms),
        stream_measurement(4, four_fps, p95_ms * 4),
    ]
    return record


def cache_measurement(kind: str, clients: int, p50: float, counts: dict[str, int]) -> Measurement:
    result = {
        "throughput_rps": 1000.0,
        "succeeded": sum(counts.values()),
        "latency": _summary(p50 + 0.2, p50 + 1.0),
        "server_time": _summary(p50, p50 * 2),
        "x_cache": counts,
    }
    config = {"batching": True, "cache": True, "requests": kind}
    return Measurement("cache", "api", f"cache {kind}", "closed", clients, config=config,
                       result=result)  # fmt: skip


def cache_record(hit_p50: float = 0.1, hit_counts: dict[str, int] | None = None) -> ScenarioRecord:
    record = SCENARIOS["cache"].new_record()
    for clients in (1, 16):
        record.measurements += [
            cache_measurement("miss", clients, 2.0, {"miss": 100}),
            cache_measurement("hit", clients, hit_p50, hit_counts or {"hit": 900}),
        ]
    return record


def test_stream_bars_pass_with_the_model_rates() -> None:
    record = streams_record(one_fps=7.5, p95_ms=1.9, four_fps=9.5)
    single, four = single_stream_check(record), four_streams_check(record)
    assert single.status == "PASS" and four.status == "PASS"
    assert single.values["rate_share"] == 7.5 / 8.0
    assert single.values["latency_factor"] == 1.9
    assert "processed 94% of the model's single-image rate (bar ≥ 90%)" in single.detail
    assert "processed 95% of the model's best batched throughput (batch 8" in four.detail
    assert "steal time not known here" in four.detail  # synthetic: no stolen/other figures


def test_stream_bars_fail_on_rate_or_latency_with_the_numbers() -> None:
    slow = streams_record(one_fps=6.0, p95_ms=1.5, four_fps=5.0)
    assert single_stream_check(slow).status == "FAIL"
    assert "processed 75% of" in single_stream_check(slow).detail
    assert four_streams_check(slow).status == "FAIL"
    late = streams_record(one_fps=7.9, p95_ms=2.5, four_fps=9.5)
    check = single_stream_check(late)
    assert check.status == "FAIL" and "= 2.50× (bar ≤ 2×)" in check.detail


def test_stream_bars_not_measured_without_the_limit_or_the_streams() -> None:
    record = SCENARIOS["streams"].new_record()
    record.measurements.append(stream_measurement(1, 7.0, 1.0))
    assert single_stream_check(record).status == "NOT MEASURED"
    assert "limit batch 1" in single_stream_check(record).detail
    assert four_streams_check(record).status == "NOT MEASURED"
    assert "4 stream(s)" in four_streams_check(record).detail


def in_round(m: Measurement, number: int, taken: float | None = 0.0) -> Measurement:
    """``m`` as measured in round ``number`` while the hypervisor and other processes took
    ``taken`` cores (half each)."""
    m.config["round"] = number
    if taken is not None:
        m.cpu = dict(m.cpu) | {STOLEN: taken / 2, OTHER: taken / 2}
    return m


def rounds_record(
    rounds: list[tuple[float, float, float | None]], streams: int = 4
) -> ScenarioRecord:
    """One round per ``(stream fps, limit images/s, cores taken)``; the limit at batch 1 for 1
    stream, else at batch 4."""
    record = SCENARIOS["streams"].new_record()
    batch = 1 if streams == 1 else 4
    for number, (fps, limit, taken) in enumerate(rounds, start=1):
        record.measurements += [
            in_round(limit_measurement("streams", batch, limit, best=True), number, taken),
            in_round(stream_measurement(streams, fps, 1.5 * streams), number, taken),
        ]
    return record


def test_stream_bars_are_the_median_of_each_rounds_own_share() -> None:
    # The machine is slower in round 2: its streams and its reference both read lower.
    record = rounds_record([(9.0, 10.0, 0.0), (6.0, 8.0, 0.01), (9.5, 10.0, 0.02)])
    four = four_streams_check(record, cores=2)
    assert four.status == "PASS"  # shares 90 %, 75 %, 95 %: median 90 %
    assert four.values["share"] == pytest.approx(0.9)
    assert four.values["mean_share"] == pytest.approx((0.9 + 0.75 + 0.95) / 3)
    assert "median of the shares of quiet rounds 1, 2 and 3: 90%, 75%, 95%" in four.detail
    assert "3 quiet round(s) of 3" in four.detail
    # One round cannot decide: the same round 2 with streams 30 % faster changes nothing.
    record = rounds_record([(9.0, 10.0, 0.0), (9.0, 8.0, 0.01), (9.5, 10.0, 0.02)])
    assert four_streams_check(record, cores=2).values["share"] == pytest.approx(0.95)


def test_stream_bars_leave_out_rounds_in_which_the_machine_was_busy_elsewhere() -> None:
    # Round 2's streams ran while the hypervisor and other processes had 0.3 of 2 cores (15 %).
    record = rounds_record([(9.2, 10.0, 0.0), (5.0, 10.0, 0.3), (9.0, 10.0, 0.1)])
    four = four_streams_check(record, cores=2)
    assert four.status == "PASS" and four.values["share"] == pytest.approx(0.91)
    assert four.values["rounds_used"] == 2 and four.values["rounds_measured"] == 3
    assert "quiet rounds 1 and 3" in four.detail and "0%, 15%, 5%" in four.detail


def test_stream_bars_are_unstable_with_too_few_quiet_rounds() -> None:
    record = rounds_record([(9.5, 10.0, 0.0), (5.0, 10.0, 0.3), (5.0, 10.0, 0.2)])
    four = four_streams_check(record, cores=2)
    assert four.status == "UNSTABLE"  # neither a pass nor a fail: the machine changed
    assert four.values["rounds_used"] == 3  # figures over every round, for the record
    assert "UNSTABLE machine: fewer than 2 of 3 rounds were quiet" in four.detail
    single = single_stream_check(
        rounds_record([(9.5, 10.0, 0.0), (9.5, 10.0, 0.2)], streams=1), cores=2
    )
    assert single.status == "UNSTABLE"
    # A single round that was quiet is all there is: a verdict.
    assert four_streams_check(rounds_record([(9.5, 10.0, 0.0)]), cores=2).status == "PASS"


def test_stream_bars_use_every_round_where_steal_time_is_not_known() -> None:
    record = rounds_record([(9.5, 10.0, 0.0), (9.5, 10.0, None)])
    four = four_streams_check(record, cores=2)
    assert four.status == "PASS" and four.values["rounds_used"] == 2
    assert "steal time not known here" in four.detail


def test_a_round_is_only_compared_with_its_own_reference() -> None:
    record = rounds_record([(9.0, 10.0, 0.0)])
    record.measurements.append(
        in_round(limit_measurement("streams", 4, 20.0, best=True), 2)  # no streams in round 2
    )
    assert four_streams_check(record, cores=2).values["batched_per_s"] == 10.0


def test_the_reference_batch_is_the_size_with_the_best_median_of_its_quiet_measurements() -> None:
    record = SCENARIOS["streams"].new_record()
    figures = {
        (1, 4): (9.0, 0.0),
        (1, 8): (10.0, 0.0),
        (2, 4): (9.5, 0.0),
        (2, 8): (7.0, 0.0),
        (3, 4): (9.2, 0.0),
        (3, 8): (8.0, 0.0),
        (4, 4): (4.0, 0.5),  # not quiet: left out of batch 4's median
        (4, 8): (12.0, 0.5),  # not quiet: left out of batch 8's median
    }
    for (number, batch), (rate, taken) in figures.items():
        m = limit_measurement("streams", batch, rate, best=False)
        record.measurements.append(in_round(m, number, taken))
    for number in (1, 2, 3, 4):
        record.measurements.append(in_round(stream_measurement(4, 8.5, 1000.0), number))
    four = four_streams_check(record, cores=2)
    # Batch 4's median 9.2 beats batch 8's 8.0 (each round's best would have been batch 8's
    # 10.0 in round 1 and 12.0 in round 4).
    assert four.values["batch_size"] == 4
    assert "(batch 4, the best median)" in four.detail
    assert four.values["rounds_used"] == 3  # round 4's reference was not quiet


def test_stream_bars_read_reports_from_before_rounds() -> None:
    # Reports before 2026-12-03 measured the limit once before and once after the streams:
    # two pairs sharing the streams measurement.
    record = streams_record(one_fps=7.5, p95_ms=1.9, four_fps=9.5)
    for m in record.measurements[:2]:
        m.config["measured"] = "before"
    after = [
        limit_measurement("streams", 1, 7.0, best=False),
        limit_measurement("streams", 8, 9.0, best=True),
    ]
    for m in after:
        m.config["measured"] = "after"
    record.measurements += after
    single, four = single_stream_check(record), four_streams_check(record)
    assert single.values["single_image_per_s"] == 7.5  # (8.0 + 7.0) / 2
    assert single.values["rate_share"] == pytest.approx((7.5 / 8.0 + 7.5 / 7.0) / 2)
    assert "median of the shares of 2 pairs: 94%, 107%" in single.detail
    assert four.values["batch_size"] == 8 and four.values["batched_per_s"] == 9.5


def test_cache_bar_compares_server_p50_at_every_concurrency() -> None:
    check = cache_check(cache_record(hit_p50=0.1))
    assert check.status == "PASS"
    assert check.values["share_1"] == 0.05 and check.values["share_16"] == 0.05
    assert "hit p50 0.100 ms vs miss p50 2.000 ms = 5%" in check.detail
    assert cache_check(cache_record(hit_p50=0.8)).status == "FAIL"


def test_cache_bar_fails_when_x_cache_contradicts_the_kind() -> None:
    check = cache_check(cache_record(hit_counts={"hit": 800, "miss": 100}))
    assert check.status == "FAIL" and "NOT as expected" in check.detail
    assert cache_check(SCENARIOS["cache"].new_record()).status == "NOT MEASURED"


def test_report_has_the_streams_and_cache_sections() -> None:
    streams = streams_record(one_fps=6.0, p95_ms=1.5, four_fps=9.5)
    cache = cache_record()
    for record in (streams, cache):
        record.checks = SCENARIOS[record.key].checks(record)
    machine = {"name": "m", "cores": 2}
    run = RunRecord("2026-01-01T00:00:00+00:00", machine, {}, scenarios=[streams, cache])
    markdown = render_markdown(run, {})
    for text in (
        "## 3. Streaming detection over WebSocket",
        "**FAIL**: one stream sending 24 fps",
        "| streams | offered fps | processed fps |",
        "| 4 | 96.0 | 9.50 | 2.4 / 2.4 / 2.4 / 2.4 | 800 / 960 | 0 |",
        "**Per stream**",
        "**Limit: the model alone**",
        "## 4. Prediction cache: hit vs miss",
        "**PASS**: a cache hit on /prediction costs at most 30%",
        "| 16 | hit | 1,000 | 0.10 / 0.20 / — | 0.30 / — | hit×900 | 0 | 0.05× |",
    ):
        assert text in markdown, text
