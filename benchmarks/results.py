"""The outcome of one load-generation run: counts, throughput, latency percentiles, raw samples.

:class:`Recorder` collects one outcome per *measured* request (warm-up requests are never handed
to it); :meth:`Recorder.result` turns them into a :class:`LoadResult`. A request succeeds when its
HTTP status is 2xx; every other status is an error counted by status code, and a request without
a response (refused, reset, closed, timed out, malformed) is an error counted by exception kind
(the exception's class name, e.g. ``TimeoutError``, ``ConnectionRefusedError``,
``ServerClosedConnection``), never as a status. Latencies and percentiles describe successful
requests only.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from benchmarks.stats import LatencySummary, rate, summarize_seconds

Mode = Literal["closed", "open"]

# Process CPU time per wall-clock second at which the generator itself is the likely bottleneck.
SATURATED_CPU: Final = 0.9


def is_success(status: int) -> bool:
    """The generator's success criterion: any 2xx status."""
    return 200 <= status < 300


@dataclass(frozen=True)
class LoadResult:
    """Measured-window results of one run (warm-up excluded).

    ``window_s`` runs from the start of the measured window to the later of its planned end and
    the last measured response. ``throughput_rps`` is successful responses per second over it.
    In open loop, ``achieved_rate_rps`` is requests actually sent per second (``target_rate_rps``
    is the offered rate), and latency is measured from each request's *scheduled* send time;
    ``send_lag`` summarises how late the generator sent them. ``generator_cpu`` is the process's
    CPU seconds per wall second during the run (≥ 0.9: the generator may be the bottleneck).
    ``latencies_ms`` holds the raw latency of every successful request in completion order, and
    ``send_offsets_s`` its (scheduled) send time relative to the window start.
    ``error_latency`` summarises how fast error statuses came back (e.g. 503s under overload).
    """

    mode: Mode
    url: str
    method: str
    path: str
    concurrency: int | None
    target_rate_rps: float | None
    arrivals: str | None
    max_outstanding: int | None
    warmup_s: float
    window_s: float
    sent: int
    succeeded: int
    dropped: int
    throughput_rps: float
    achieved_rate_rps: float | None
    latency: LatencySummary
    send_lag: LatencySummary | None
    status_counts: dict[int, int]
    errors_by_status: dict[int, int]
    errors_by_kind: dict[str, int]
    connections_opened: int
    retries: int
    generator_cpu: float
    latencies_ms: npt.NDArray[np.float64] = field(repr=False)
    send_offsets_s: npt.NDArray[np.float64] = field(repr=False)
    error_latency: LatencySummary | None = None

    @property
    def errors(self) -> int:
        """Measured requests that did not succeed (error statuses and exceptions)."""
        return sum(self.errors_by_status.values()) + sum(self.errors_by_kind.values())

    @property
    def generator_saturated(self) -> bool:
        """Whether the generator used (nearly) a full core: it may be what limited the run."""
        return self.generator_cpu >= SATURATED_CPU

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary without the raw arrays."""
        return {
            "mode": self.mode,
            "url": self.url,
            "method": self.method,
            "path": self.path,
            "concurrency": self.concurrency,
            "target_rate_rps": self.target_rate_rps,
            "arrivals": self.arrivals,
            "max_outstanding": self.max_outstanding,
            "warmup_s": self.warmup_s,
            "window_s": self.window_s,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "errors": self.errors,
            "dropped": self.dropped,
            "throughput_rps": self.throughput_rps,
            "achieved_rate_rps": self.achieved_rate_rps,
            "latency": self.latency.to_dict(),
            "error_latency": None if self.error_latency is None else self.error_latency.to_dict(),
            "send_lag": None if self.send_lag is None else self.send_lag.to_dict(),
            "status_counts": {str(code): n for code, n in sorted(self.status_counts.items())},
            "errors_by_status": {str(code): n for code, n in sorted(self.errors_by_status.items())},
            "errors_by_kind": dict(sorted(self.errors_by_kind.items())),
            "connections_opened": self.connections_opened,
            "retries": self.retries,
            "generator_cpu": self.generator_cpu,
            "generator_saturated": self.generator_saturated,
        }


@dataclass(frozen=True)
class RunInfo:
    """What was run: the parameters a :class:`LoadResult` reports alongside the numbers."""

    mode: Mode
    url: str
    method: str
    path: str
    warmup_s: float
    concurrency: int | None = None
    target_rate_rps: float | None = None
    arrivals: str | None = None
    max_outstanding: int | None = None


class Recorder:
    """Per-request outcomes of the measured window; times are ``time.perf_counter()`` seconds."""

    def __init__(self) -> None:
        self.window_start: float | None = None
        self.last_completion: float | None = None
        self.sent = 0
        self.dropped = 0
        self._latencies: list[float] = []
        self._error_latencies: list[float] = []
        self._offsets: list[float] = []
        self._lags: list[float] = []
        self._statuses: Counter[int] = Counter()
        self._kinds: Counter[str] = Counter()
        self._last_send: float | None = None

    def start_window(self, at: float) -> None:
        """The measured window starts at ``at`` (its first scheduled or actual send)."""
        if self.window_start is None:
            self.window_start = at

    def response(self, scheduled: float, sent_at: float, completed: float, status: int) -> None:
        """A measured request scheduled at ``scheduled`` and sent at ``sent_at`` got a response.

        Its latency runs from the scheduled time, or from the send if that came first (a timer
        may fire a little early: uvloop's timers have millisecond resolution): a request does
        not wait before it is sent.
        """
        self._sent(scheduled, sent_at, completed)
        self._statuses[status] += 1
        latency = completed - min(scheduled, sent_at)
        if is_success(status):
            self._latencies.append(latency)
            self._offsets.append(scheduled)
        else:
            self._error_latencies.append(latency)

    def failure(self, scheduled: float, sent_at: float, completed: float, kind: str) -> None:
        """A measured request got no HTTP response; ``kind`` names the exception."""
        self._sent(scheduled, sent_at, completed)
        self._kinds[kind] += 1

    def drop(self) -> None:
        """A measured open-loop arrival the generator did not send (too many outstanding)."""
        self.dropped += 1

    def _sent(self, scheduled: float, sent_at: float, completed: float) -> None:
        self.sent += 1
        self._lags.append(max(0.0, sent_at - scheduled))
        if self.last_completion is None or completed > self.last_completion:
            self.last_completion = completed
        if self._last_send is None or sent_at > self._last_send:
            self._last_send = sent_at

    def result(
        self,
        info: RunInfo,
        *,
        planned_end: float | None,
        connections_opened: int,
        retries: int,
        generator_cpu: float,
    ) -> LoadResult:
        """The run's :class:`LoadResult`; ``planned_end`` is the window's scheduled end, if any."""
        start = self.window_start if self.window_start is not None else 0.0
        ends = [t for t in (planned_end, self.last_completion) if t is not None]
        window = max(ends) - start if ends else 0.0
        succeeded = len(self._latencies)
        achieved: float | None = None
        if info.mode == "open":
            send_ends = [t for t in (planned_end, self._last_send) if t is not None]
            send_span = max(send_ends) - start if send_ends else 0.0
            achieved = rate(self.sent, send_span)
        return LoadResult(
            mode=info.mode,
            url=info.url,
            method=info.method,
            path=info.path,
            concurrency=info.concurrency,
            target_rate_rps=info.target_rate_rps,
            arrivals=info.arrivals,
            max_outstanding=info.max_outstanding,
            warmup_s=info.warmup_s,
            window_s=window,
            sent=self.sent,
            succeeded=succeeded,
            dropped=self.dropped,
            throughput_rps=rate(succeeded, window),
            achieved_rate_rps=achieved,
            latency=summarize_seconds(self._latencies),
            send_lag=summarize_seconds(self._lags) if info.mode == "open" else None,
            status_counts=dict(self._statuses),
            errors_by_status={
                code: n for code, n in self._statuses.items() if not is_success(code)
            },
            errors_by_kind=dict(self._kinds),
            connections_opened=connections_opened,
            retries=retries,
            generator_cpu=generator_cpu,
            latencies_ms=np.asarray(self._latencies, dtype=np.float64) * 1000.0,
            send_offsets_s=np.asarray(self._offsets, dtype=np.float64) - start,
            error_latency=(
                summarize_seconds(self._error_latencies) if self._error_latencies else None
            ),
        )


class ClosedLoopBudget:
    """When closed-loop clients stop and which of their sends are measured.

    Sends before ``warmup`` has passed are not measured; the loop ends at ``duration`` seconds
    of measured sending, or once ``requests`` measured sends (shared by all clients) were made.
    """

    def __init__(self, warmup: float, duration: float | None, requests: int | None) -> None:
        self.started = time.perf_counter()
        self.measure_from = self.started + warmup
        self.stop_at = self.measure_from + duration if duration is not None else math.inf
        self.planned_end = self.stop_at if duration is not None else None
        self.remaining = requests

    def next_send(self) -> bool | None:
        """``None``: stop now; otherwise whether the send about to be made is measured."""
        now = time.perf_counter()
        if now >= self.stop_at:
            return None
        measured = now >= self.measure_from
        if measured and self.remaining is not None:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        return measured
