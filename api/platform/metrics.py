"""Prometheus metrics of one API process, and their exposition (``GET /metrics``).

The serving layer knows nothing about Prometheus: the batcher, the cache and the WebSocket
streams report through small observer interfaces (``serving.batching.BatcherObserver``,
``api.inference.cache.CacheObserver``, ``api.inference.streaming.StreamObserver``) that this module
implements.

Two modes, chosen by prometheus_client itself from ``PROMETHEUS_MULTIPROC_DIR`` when it is first
imported (``tritongate serve`` sets it for its workers and cleans the directory first):

* single process (no variable; tests, a bare ``uvicorn``): every :class:`Metrics` has its own
  registry, so two apps in one process never share or clash;
* multiprocess (gunicorn): values live in per-process files in that directory and a scrape,
  whichever worker answers it, aggregates every worker's files. Gauges use ``livesum``
  (the sum over live processes; gunicorn's ``child_exit`` hook marks dead workers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client.multiprocess import MultiProcessCollector

from serving.batching import RejectReason

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0)  # fmt: skip
ROUNDTRIP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0, 10.0)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

UNMATCHED_ROUTE = "unmatched"


def multiprocess_dir() -> Path | None:
    """The directory prometheus_client writes to in multiprocess mode (its own variable)."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def render_multiprocess(directory: Path) -> bytes:
    """Every process's metrics in ``directory``, aggregated (also used by ``tritongate serve``'s
    separate metrics port)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry)


class Metrics:
    """Every metric this process exports, created once per app."""

    def __init__(self, multiprocess: Path | None = None) -> None:
        # No ``*_created`` series: they double the exposition and no dashboard uses them.
        disable_created_metrics()
        self.multiprocess = multiprocess
        if multiprocess is None:
            self.registry: CollectorRegistry | None = CollectorRegistry()
            process_collector.ProcessCollector(registry=self.registry)
            platform_collector.PlatformCollector(registry=self.registry)
            gc_collector.GCCollector(registry=self.registry)
        else:  # values go to files; a scrape reads them all (registering would count twice)
            self.registry = None
        registry = self.registry

        self.http_requests = Counter(
            "tritongate_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "tritongate_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "tritongate_batch_size",
            "Rows per inference call sent to Triton by the micro-batcher.",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "tritongate_queue_wait_seconds",
            "Time an item waited in the micro-batcher's queue before its batch left.",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.roundtrip = Histogram(
            "tritongate_triton_roundtrip_seconds",
            "Round trip of one batched inference call to Triton (or in-process ONNX Runtime).",
            ["model"],
            buckets=ROUNDTRIP_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "tritongate_queue_depth",
            "Items admitted to the micro-batcher and not yet answered (waiting or in flight).",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.rejected = Counter(
            "tritongate_rejected_total",
            "Items refused by a full queue or on arrival at the in-progress bound (queue_full, "
            "HTTP 503) or past their deadline (deadline, HTTP 504).",
            ["model", "reason"],
            registry=registry,
        )
        self.batch_failures = Counter(
            "tritongate_batch_failures_total",
            "Batched inference calls that failed (every member got the error).",
            ["model"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "tritongate_cache_hits_total",
            "Prediction cache lookups answered from the cache.",
            ["model"],
            registry=registry,
        )
        self.cache_misses = Counter(
            "tritongate_cache_misses_total",
            "Prediction cache lookups not answered from the cache (bypassed ones included).",
            ["model"],
            registry=registry,
        )
        self.cache_bypassed = Counter(
            "tritongate_cache_bypassed_total",
            "Lookups that skipped the cache because its backend was failing.",
            ["model"],
            registry=registry,
        )
        self.cache_errors = Counter(
            "tritongate_cache_errors_total",
            "Failed cache backend operations (e.g. Redis unreachable), by operation.",
            ["operation"],
            registry=registry,
        )
        self.ws_open = Gauge(
            "tritongate_websocket_connections_open",
            "WebSocket detection streams open now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.ws_connections = Counter(
            "tritongate_websocket_connections_total",
            "WebSocket detection streams accepted.",
            registry=registry,
        )
        self.ws_frames_received = Counter(
            "tritongate_websocket_frames_received_total",
            "Frames received on detection streams.",
            registry=registry,
        )
        self.ws_frames_dropped = Counter(
            "tritongate_websocket_frames_dropped_total",
            "Frames not processed: replaced by a newer frame, too large, not an image, over the "
            "stream's rate limit, or refused by a full queue or a deadline.",
            registry=registry,
        )
        for operation in ("get", "set", "clear"):  # zero from the start, not absent
            self.cache_errors.labels(operation)
        # Children by label values: ``labels()`` validates and locks on every call.
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    # -- HTTP ------------------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (self.http_requests.labels(*labels), self.http_duration.labels(*labels))
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        if self.multiprocess is not None:
            return render_multiprocess(self.multiprocess)
        assert self.registry is not None
        return generate_latest(self.registry)

    # -- observers -------------------------------------------------------------------------------

    def admission_refused(self, model: str) -> None:
        """An inference request refused on arrival: its model's bound was reached (503)."""
        self.rejected.labels(model, "queue_full").inc()

    def batcher_observer(self, model: str) -> BatcherMetrics:
        """The model's batcher metrics; its cache counters start at zero too, so hit-rate
        queries have both series from the first scrape."""
        for counter in (self.cache_hits, self.cache_misses, self.cache_bypassed):
            counter.labels(model)
        return BatcherMetrics(self, model)

    def cache_observer(self) -> CacheMetrics:
        return CacheMetrics(self)

    def stream_observer(self) -> StreamMetrics:
        return StreamMetrics(self)


class BatcherMetrics:
    """One model's batcher, as metrics (label children bound once)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._depth = metrics.queue_depth.labels(model)
        self._size = metrics.batch_size.labels(model)
        self._wait = metrics.queue_wait.labels(model)
        self._roundtrip = metrics.roundtrip.labels(model)
        self._failures = metrics.batch_failures.labels(model)
        self._rejected = {
            reason: metrics.rejected.labels(model, reason) for reason in ("queue_full", "deadline")
        }

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def rejected(self, reason: RejectReason) -> None:
        self._rejected[reason].inc()

    def batch_sent(self, rows: int, waits: Sequence[float]) -> None:
        self._size.observe(rows)
        for wait in waits:
            self._wait.observe(wait)

    def batch_done(self, seconds: float) -> None:
        self._roundtrip.observe(seconds)

    def batch_failed(self) -> None:
        self._failures.inc()


class CacheMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def hit(self, model: str) -> None:
        self._metrics.cache_hits.labels(model).inc()

    def miss(self, model: str) -> None:
        self._metrics.cache_misses.labels(model).inc()

    def bypassed(self, model: str) -> None:
        self._metrics.cache_bypassed.labels(model).inc()

    def error(self, operation: str) -> None:
        self._metrics.cache_errors.labels(operation).inc()


class StreamMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def opened(self) -> None:
        self._metrics.ws_connections.inc()
        self._metrics.ws_open.inc()

    def closed(self) -> None:
        self._metrics.ws_open.dec()

    def frame_received(self) -> None:
        self._metrics.ws_frames_received.inc()

    def frame_dropped(self) -> None:
        self._metrics.ws_frames_dropped.inc()
