"""benchmarks.stats: latency summaries agree with numpy and handle no samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.stats import percentiles, rate, summarize_ms, summarize_seconds


def test_summary_matches_numpy() -> None:
    samples = np.random.default_rng(0).lognormal(2.0, 0.5, 1000)
    summary = summarize_ms(samples)
    assert summary.count == 1000
    assert summary.mean_ms == pytest.approx(samples.mean())
    assert summary.p50_ms == pytest.approx(np.median(samples))
    assert summary.p99_ms == pytest.approx(np.percentile(samples, 99))
    assert (summary.min_ms, summary.max_ms) == (samples.min(), samples.max())
    assert percentiles(samples, [90])[90.0] == pytest.approx(summary.p90_ms)


def test_seconds_are_reported_in_milliseconds() -> None:
    summary = summarize_seconds([0.010, 0.020, 0.030])
    assert summary.p50_ms == pytest.approx(20.0) and summary.max_ms == pytest.approx(30.0)


def test_no_samples() -> None:
    summary = summarize_ms([])
    assert summary.count == 0 and math.isnan(summary.p99_ms)
    assert summary.to_dict()["p99_ms"] is None and summary.to_dict()["count"] == 0
    assert math.isnan(percentiles([], [50])[50.0])
    assert rate(10, 0.0) == 0.0 and rate(10, 2.0) == 5.0
