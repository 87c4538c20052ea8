"""Overload and soak against the API in its own uvicorn process and the session's tritonserver.

* Overload: object detection's capacity is measured (closed loop, real photos), then an open
  loop offers 3× that rate for 30 s (again from what the service absorbed, if a slow spell of
  the VM made the first estimate so low that 3× it was all accepted). The queue stays at its
  bound, the excess gets 503 with ``Retry-After`` quickly, the accepted requests keep a bounded
  p99, memory stays flat, and once the load stops latency is back to normal within seconds.
  (Detection is where a model server runs out of capacity: the model is the bottleneck. For
  text classification the API process itself is, and there shedding 3× its capacity costs most
  of a core: see docs/reliability.md.)
* Soak (``TRITONGATE_SOAK_S``, 600 s by default): text, image and WebSocket traffic together;
  the API's memory and open file descriptors stay flat.

Both are marked slow: ``.ci/run`` runs them after the default suite.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from benchmarks import loadgen
from benchmarks.http11 import HttpResponse
from benchmarks.payloads import FilePart, RequestSpec, post_json, post_multipart
from serving.launcher import LocalTriton
from tests.integration.faults import StreamRecord, stream_frames
from tests.integration.live_server import LiveServer, live_api
from tests.integration.process_probe import ProcessSampler, Sample

pytestmark = pytest.mark.slow

QUEUE_SIZE = 64
OVERLOAD_FACTOR = 3.0
OVERLOAD_S = 30.0
SOAK_S = float(os.environ.get("TRITONGATE_SOAK_S", "600"))
DEPTH = re.compile(r'^tritongate_queue_depth\{model="yolos"\} ([0-9.e+]+)$', re.MULTILINE)


@pytest.fixture(scope="module")
def server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log_dir = tmp_path_factory.mktemp("api")
    with live_api(
        triton, exported_repository, log_dir, queue_size=QUEUE_SIZE, request_timeout_s=5.0
    ) as running:
        yield running


def _photo_uploads(photos: list[Path]) -> list[FilePart]:
    return [FilePart(p.name, p.read_bytes(), "image/jpeg") for p in photos[:4]]


def _probe_p50_ms(server: LiveServer, photo: FilePart, requests: int = 20) -> float:
    """Median latency of sequential requests: what one client sees on an idle service."""
    times = []
    files = {"image": (photo.filename, photo.content, photo.content_type)}
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for _ in range(requests):
            started = time.perf_counter()
            assert client.post("/object-detection", files=files).status_code == 200
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _watch_queue(server: LiveServer, stop: threading.Event, depths: list[float]) -> None:
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        while not stop.is_set():
            found = DEPTH.search(client.get("/metrics").text)
            if found:
                depths.append(float(found.group(1)))
            stop.wait(0.2)


@dataclass
class Overload:
    result: loadgen.LoadResult
    retry_after: Counter[str | None]
    depths: list[float]
    samples: list[Sample]


def _offer(server: LiveServer, request: RequestSpec, rate: float) -> Overload:
    """Offer ``rate`` detection requests per second for ``OVERLOAD_S``, watching the API."""
    retry_after: Counter[str | None] = Counter()

    def on_response(response: HttpResponse) -> None:
        if response.status == 503:
            retry_after[response.header("retry-after")] += 1

    sampler = ProcessSampler(server.process.pid).start()
    stop_watch, depths = threading.Event(), []
    watcher = threading.Thread(target=_watch_queue, args=(server, stop_watch, depths))
    watcher.start()
    try:
        result = loadgen.run(
            loadgen.open_loop(
                server.base_url,
                request,
                rate=rate,
                duration=OVERLOAD_S,
                warmup=2.0,
                max_outstanding=4096,
                timeout=10.0,
                on_response=on_response,
            )
        )
    finally:
        stop_watch.set()
        watcher.join()
        samples = sampler.stop()
    return Overload(result, retry_after, depths, samples)


def _absorbed(overload: Overload) -> bool:
    """Every request was accepted at about the offered rate: the service was not overloaded."""
    result = overload.result
    return (
        result.status_counts.get(503, 0) == 0
        and result.achieved_rate_rps is not None
        and result.throughput_rps >= 0.9 * result.achieved_rate_rps
    )


def test_three_times_capacity_is_shed_quickly_and_the_service_recovers(
    server: LiveServer, photos: list[Path]
) -> None:
    uploads = _photo_uploads(photos)
    request = post_multipart("/object-detection", uploads)
    baseline_ms = _probe_p50_ms(server, uploads[0])
    capacity = loadgen.run(
        loadgen.closed_loop(server.base_url, request, concurrency=16, duration=5.0, warmup=2.0)
    )
    capacity_rps = capacity.throughput_rps
    overload = _offer(server, request, OVERLOAD_FACTOR * capacity_rps)
    if _absorbed(overload):
        # The capacity was measured during a slow spell of the VM (one CI run: 5 req/s, then
        # 13 req/s offered and all accepted). What the service absorbed is a truer lower bound.
        print(
            f"\ncapacity {capacity_rps:,.1f} req/s was too low: {OVERLOAD_FACTOR:.0f}× it "
            f"({overload.result.achieved_rate_rps:,.1f} req/s) was all accepted; measuring again"
        )
        capacity_rps = overload.result.throughput_rps
        overload = _offer(server, request, OVERLOAD_FACTOR * capacity_rps)
    result, rate = overload.result, OVERLOAD_FACTOR * capacity_rps
    stopped = time.monotonic()
    recovery = []
    while time.monotonic() - stopped < 10.0:
        recovery.append((time.monotonic() - stopped, _probe_p50_ms(server, uploads[0], 10)))
        if recovery[-1][1] <= 2 * baseline_ms + 5:
            break
    back_in_s, after_ms = recovery[-1]
    steady = [s.rss_mib for s in overload.samples if s.at >= 5.0]
    growth = max(steady) - steady[0]
    rejected = result.error_latency
    depths = overload.depths
    print(
        f"\nbaseline p50 {baseline_ms:.2f} ms; capacity {capacity_rps:,.0f} req/s "
        f"(16 clients: {capacity.throughput_rps:,.1f} req/s, {capacity.status_counts}); offered "
        f"{rate:,.0f} req/s for {OVERLOAD_S:.0f} s, sent "
        f"{result.achieved_rate_rps:,.0f}/s: statuses {result.status_counts}, exceptions "
        f"{result.errors_by_kind}, dropped by the generator {result.dropped}; accepted "
        f"{result.throughput_rps:,.0f}/s p50 {result.latency.p50_ms:.1f} ms p99 "
        f"{result.latency.p99_ms:.1f} ms; 503 p50 "
        f"{rejected.p50_ms if rejected else float('nan'):.1f} ms p99 "
        f"{rejected.p99_ms if rejected else float('nan'):.1f} ms; queue depth max "
        f"{max(depths, default=0):.0f} (bound {QUEUE_SIZE}); RSS {steady[0]:.0f} → "
        f"{steady[-1]:.0f} MiB (max growth {growth:.1f}); latency normal again "
        f"{back_in_s:.1f} s after the load (p50 {after_ms:.2f} ms)"
    )
    assert result.achieved_rate_rps is not None
    assert result.achieved_rate_rps >= 2.0 * capacity_rps, "not overloaded"
    assert set(result.status_counts) <= {200, 503}, result.status_counts
    assert not result.errors_by_kind, "every request got an HTTP answer"
    assert result.status_counts.get(503, 0) > 0 and rejected is not None
    retry_after = overload.retry_after
    assert set(retry_after) != {None} and None not in retry_after, retry_after
    assert rejected.p50_ms <= 50.0 and rejected.p99_ms <= 500.0, "the excess is refused quickly"
    assert result.latency.p99_ms <= 2000.0, "accepted requests keep a bounded p99"
    assert result.throughput_rps >= 0.5 * capacity_rps, "still serving at capacity"
    assert depths and max(depths) <= QUEUE_SIZE
    assert growth <= 40.0, "memory stays flat"
    assert after_ms <= 2 * baseline_ms + 5 and back_in_s <= 5.0


def test_soak_keeps_memory_and_file_descriptors_flat(
    server: LiveServer, photos: list[Path]
) -> None:
    text = post_json("/prediction", [{"text": f"soak document {i} about space"} for i in range(50)])
    image = post_multipart("/object-detection", _photo_uploads(photos))
    warmup = min(60.0, SOAK_S / 5)
    sampler = ProcessSampler(server.process.pid, interval=2.0).start()

    async def traffic() -> tuple[loadgen.LoadResult, loadgen.LoadResult, StreamRecord]:
        stop = asyncio.Event()
        stream = StreamRecord()
        streaming = asyncio.create_task(stream_frames(server.ws_url, stream, stop, 0.2))
        texts, images = await asyncio.gather(
            loadgen.closed_loop(server.base_url, text, concurrency=4, duration=SOAK_S),
            loadgen.closed_loop(server.base_url, image, concurrency=1, duration=SOAK_S),
        )
        stop.set()
        await streaming
        return texts, images, stream

    try:
        texts, images, stream = asyncio.run(traffic())
    finally:
        samples = sampler.stop()
    settled = [s for s in samples if s.at >= warmup]
    first, last = settled[0], settled[-1]
    peak = max(s.rss_mib for s in settled)
    print(
        f"\nsoak {SOAK_S:.0f} s: {texts.succeeded:,} texts ({texts.status_counts}), "
        f"{images.succeeded:,} images ({images.status_counts}), {len(stream.results):,} stream "
        f"results; after {warmup:.0f} s warm-up RSS {first.rss_mib:.1f} → {last.rss_mib:.1f} MiB "
        f"(peak {peak:.1f}), fds {first.fds} → {last.fds} (max {max(s.fds for s in settled)})"
    )
    assert texts.errors == 0 and images.errors == 0, (texts.status_counts, images.status_counts)
    assert stream.results and not stream.errors and not stream.close_codes
    assert last.rss_mib - first.rss_mib <= 25.0, "memory grows"
    assert peak - first.rss_mib <= 50.0
    assert last.fds <= first.fds + 5, "file descriptors leak"
