"""Summaries of latency samples: mean, percentiles and maximum, in milliseconds.

Percentiles use numpy's default (linear interpolation between the two nearest ranks), the
convention of numpy, pandas and most plotting tools, so a report's numbers can be recomputed from
its raw samples with one ``np.percentile`` call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

REPORTED_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True)
class LatencySummary:
    """Latency statistics of ``count`` samples, in milliseconds (NaN when there are none)."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: NaN (no samples) becomes ``None``."""
        return {
            key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in asdict(self).items()
        }


def as_array(values: Sequence[float] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``values`` as a flat float64 array."""
    return np.asarray(values, dtype=np.float64).reshape(-1)


def percentiles(
    values: Sequence[float] | npt.ArrayLike, qs: Sequence[float] = REPORTED_PERCENTILES
) -> dict[float, float]:
    """``{q: value}`` for each percentile ``q`` in [0, 100]; NaN for every ``q`` when empty."""
    samples = as_array(values)
    if samples.size == 0:
        return {float(q): math.nan for q in qs}
    computed = np.percentile(samples, list(qs))
    return {float(q): float(v) for q, v in zip(qs, computed, strict=True)}


def summarize_ms(values_ms: Sequence[float] | npt.ArrayLike) -> LatencySummary:
    """Summary of latency samples already expressed in milliseconds."""
    samples = as_array(values_ms)
    if samples.size == 0:
        nan = math.nan
        return LatencySummary(0, nan, nan, nan, nan, nan, nan, nan)
    p50, p90, p95, p99 = np.percentile(samples, REPORTED_PERCENTILES)
    return LatencySummary(
        count=int(samples.size),
        mean_ms=float(samples.mean()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(samples.max()),
        min_ms=float(samples.min()),
    )


def summarize_seconds(values_s: Sequence[float] | npt.ArrayLike) -> LatencySummary:
    """Summary of latency samples given in seconds, reported in milliseconds."""
    return summarize_ms(as_array(values_s) * 1000.0)


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 for an empty or zero-length window."""
    return count / seconds if seconds > 0 else 0.0
