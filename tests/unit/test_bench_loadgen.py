"""benchmarks.loadgen against a fake HTTP target with known delays, statuses and framing."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import itertools
import json
import random
import time

import numpy as np
import pytest

from benchmarks import loadgen
from benchmarks.http11 import HttpConnection
from benchmarks.payloads import FilePart, get, post_bytes, post_json, post_multipart
from benchmarks.servers import free_port
from tests.unit.benchmarks.fake_http_server import (
    FakeHttpServer,
    ReceivedRequest,
    Reply,
    constant,
    json_directed,
)

STATUS_CYCLE = (200, 200, 200, 200, 503, 200, 200, 404, 200, 503)  # every 5th 503, one 404


# -- closed loop --------------------------------------------------------------------------------


def test_closed_loop_counts_are_exact_and_errors_are_counted_by_status() -> None:
    request = post_json("/prediction", [{"status": status} for status in STATUS_CYCLE])
    with FakeHttpServer(json_directed) as server:
        result = loadgen.run(loadgen.closed_loop(server.url, request, concurrency=4, requests=100))
        received = len(server.received)
    assert result.sent == 100 == received
    assert result.succeeded == 70
    assert result.status_counts == {200: 70, 503: 20, 404: 10}
    assert result.errors_by_status == {503: 20, 404: 10}
    assert result.errors_by_kind == {}
    assert result.errors == 30
    assert result.latency.count == 70 == result.latencies_ms.size == result.send_offsets_s.size
    assert result.connections_opened == 4 and result.retries == 0


def test_closed_loop_percentiles_match_a_known_delay_distribution() -> None:
    delays_ms = [5.0 + 0.5 * k for k in range(100)]  # uniform 5 .. 54.5 ms
    random.Random(0).shuffle(delays_ms)
    request = post_json("/prediction", [{"delay_ms": d} for d in delays_ms])
    with FakeHttpServer(json_directed) as server:
        result = loadgen.run(loadgen.closed_loop(server.url, request, concurrency=8, requests=200))
    served = np.repeat(delays_ms, 2)  # 200 consecutive requests: each delay exactly twice
    expected = dict(zip((50, 90, 95, 99), np.percentile(served, [50, 90, 95, 99]), strict=True))
    measured = {
        50: result.latency.p50_ms,
        90: result.latency.p90_ms,
        95: result.latency.p95_ms,
        99: result.latency.p99_ms,
    }
    for q, value in measured.items():
        # A latency is the server's delay plus a little transport and timer overhead.
        assert expected[q] <= value <= expected[q] + 5.0, (q, value, expected[q])
    assert served.mean() <= result.latency.mean_ms <= served.mean() + 5.0
    assert result.latency.min_ms >= 5.0 and 54.5 <= result.latency.max_ms <= 65.0


def test_closed_loop_for_a_duration_measures_throughput_over_the_window() -> None:
    with FakeHttpServer(constant(Reply(delay=0.020))) as server:
        result = loadgen.run(
            loadgen.closed_loop(server.url, get("/noop"), concurrency=4, duration=1.0, warmup=0.2)
        )
    # 4 clients x one 20 ms request at a time: at most 200 req/s.
    assert 170 <= result.throughput_rps <= 200.5
    assert 1.0 <= result.window_s <= 1.05
    assert 20.0 <= result.latency.p50_ms <= 23.0
    assert result.errors == 0 and result.dropped == 0


def test_warmup_requests_are_excluded() -> None:
    first_arrival: list[float] = []

    def slow_failures_then_fast(request: ReceivedRequest) -> Reply:
        first_arrival.append(request.arrived)
        if request.arrived - first_arrival[0] < 0.3:
            return Reply(status=500, delay=0.100)
        return Reply(status=200, delay=0.010)

    with FakeHttpServer(slow_failures_then_fast) as server:
        result = loadgen.run(
            loadgen.closed_loop(server.url, get("/x"), concurrency=4, requests=50, warmup=0.6)
        )
        warmup_requests = len(server.received) - 50
    assert warmup_requests >= 12  # 4 clients kept busy for 0.6 s
    assert result.sent == 50 and result.status_counts == {200: 50}
    assert result.latency.max_ms < 60.0  # none of the 100 ms warm-up requests


# -- open loop ----------------------------------------------------------------------------------


def test_open_loop_uniform_arrivals_achieve_the_rate() -> None:
    with FakeHttpServer(constant(Reply(delay=0.002))) as server:
        result = loadgen.run(
            loadgen.open_loop(
                server.url, get("/x"), rate=400, duration=1.0, warmup=0.2, arrivals="uniform"
            )
        )
        received = len(server.received)
    assert received == 80 + 400  # warm-up arrivals were sent, and not counted
    assert result.sent == 400 and result.dropped == 0 and result.errors == 0
    assert result.achieved_rate_rps == pytest.approx(400, rel=0.05)
    assert result.throughput_rps == pytest.approx(400, rel=0.05)
    assert 2.0 <= result.latency.p50_ms <= 6.0
    assert result.send_lag is not None and result.send_lag.p50_ms < 2.0


def test_open_loop_poisson_arrivals_follow_their_schedule() -> None:
    rate, warmup, duration, seed = 500.0, 0.2, 1.5, 7
    window = itertools.takewhile(
        lambda offset: offset < warmup + duration, loadgen.arrival_offsets(rate, "poisson", seed)
    )
    scheduled = sum(1 for offset in window if offset >= warmup)
    with FakeHttpServer(constant(Reply(delay=0.002))) as server:
        result = loadgen.run(
            loadgen.open_loop(
                server.url, get("/x"), rate=rate, duration=duration, warmup=warmup, seed=seed
            )
        )
    assert result.sent == scheduled and result.dropped == 0
    assert result.achieved_rate_rps == pytest.approx(scheduled / duration, rel=0.01)
    assert result.achieved_rate_rps == pytest.approx(rate, rel=0.05)


def test_arrival_schedules() -> None:
    uniform = list(itertools.islice(loadgen.arrival_offsets(200, "uniform"), 5))
    assert uniform == pytest.approx([0.0, 0.005, 0.010, 0.015, 0.020])
    offsets = np.fromiter(
        itertools.islice(loadgen.arrival_offsets(100, "poisson", 3), 20_000), float
    )
    gaps = np.diff(offsets)
    assert offsets[0] == 0.0 and (gaps > 0).all()
    assert gaps.mean() == pytest.approx(0.01, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)  # exponential: CV = 1
    with pytest.raises(ValueError):
        next(loadgen.arrival_offsets(0, "uniform"))


def test_open_loop_latency_grows_with_queueing_in_the_server() -> None:
    # One request at a time, 20 ms each (50 req/s), offered 100 req/s: request k waits for the
    # k requests before it, so its latency from its scheduled time is about 10 k + 20 ms.
    with FakeHttpServer(constant(Reply(delay=0.020)), serial=True) as server:
        result = loadgen.run(
            loadgen.open_loop(server.url, get("/x"), rate=100, requests=40, arrivals="uniform")
        )
        responded = np.array(server.stats.responded)
    assert result.succeeded == 40 and result.dropped == 0
    order = np.argsort(result.send_offsets_s)
    scheduled = result.send_offsets_s[order]
    latencies = result.latencies_ms[order]
    slope, _ = np.polyfit(scheduled * 1000, latencies, 1)
    assert slope >= 0.85  # about 1: the queue grows by 10 ms of waiting every 10 ms
    assert latencies[0] < 40.0 and latencies[-1] >= 410.0
    # Exactly the server's queue: each latency is (its reply time - its scheduled time) plus
    # transport, whatever the server's real service times were.
    from_server = (responded - responded[0]) * 1000 - (scheduled - scheduled[0]) * 1000
    assert np.abs((latencies - latencies[0]) - from_server).max() < 5.0
    assert result.throughput_rps < 55.0  # the server's capacity, not the offered rate


def test_open_loop_latency_counts_from_the_scheduled_time_when_the_generator_is_late() -> None:
    def body(index: int) -> bytes:
        if index == 20:
            time.sleep(0.1)  # the generator stalls: requests 21.. are sent late
        return b"{}"

    request = post_bytes("/x", body, "application/json")
    with FakeHttpServer(constant(Reply(delay=0.002))) as server:
        result = loadgen.run(
            loadgen.open_loop(server.url, request, rate=200, requests=60, arrivals="uniform")
        )
    assert result.succeeded == 60
    latency_at = dict(
        zip(np.round(result.send_offsets_s * 1000).astype(int), result.latencies_ms, strict=True)
    )
    # Scheduled at 100 ms, sent after its own 100 ms stall; scheduled at 105 ms, sent at ~200 ms.
    assert latency_at[100] >= 100.0
    assert latency_at[105] >= 90.0
    assert latency_at[50] < 20.0 and latency_at[295] < 20.0
    assert result.send_lag is not None and result.send_lag.max_ms >= 90.0
    assert result.latency.p50_ms < 20.0


def test_open_loop_drops_arrivals_beyond_max_outstanding() -> None:
    with FakeHttpServer(constant(Reply(delay=0.050)), serial=True) as server:
        result = loadgen.run(
            loadgen.open_loop(
                server.url,
                get("/x"),
                rate=100,
                requests=30,
                arrivals="uniform",
                max_outstanding=3,
            )
        )
        peak, received = server.stats.peak_in_flight, len(server.received)
    assert result.sent + result.dropped == 30
    assert result.dropped >= 15
    assert received == result.sent == result.succeeded
    assert peak <= 3 and result.connections_opened <= 3


def test_open_loop_keeps_its_rate_while_responses_are_slow() -> None:
    # 100 ms per response at 500 req/s: about 50 requests outstanding at any time. The arrivals
    # must not wait for responses (that would be a closed loop in disguise).
    with FakeHttpServer(constant(Reply(delay=0.100))) as server:
        result = loadgen.run(
            loadgen.open_loop(
                server.url, get("/x"), rate=500, duration=1.0, warmup=0.2, arrivals="uniform"
            )
        )
        peak = server.stats.peak_in_flight
    assert result.sent == 500 and result.dropped == 0 and result.errors == 0
    assert result.achieved_rate_rps == pytest.approx(500, rel=0.05)
    # The window closes with the last response, 100 ms after the last arrival.
    assert result.window_s == pytest.approx(1.1, abs=0.03)
    assert result.throughput_rps == pytest.approx(500 / 1.1, rel=0.05)
    assert 40 <= peak <= 70
    assert 100.0 <= result.latency.p50_ms <= 110.0


def test_open_loop_counts_errors_by_status() -> None:
    request = post_json("/prediction", [{"status": status} for status in STATUS_CYCLE])
    with FakeHttpServer(json_directed) as server:
        result = loadgen.run(
            loadgen.open_loop(server.url, request, rate=400, requests=100, arrivals="uniform")
        )
    assert result.sent == 100 and result.dropped == 0
    assert result.status_counts == {200: 70, 503: 20, 404: 10}
    assert result.errors_by_status == {503: 20, 404: 10} and result.errors == 30
    assert result.latency.count == 70


# -- framing and connection handling --------------------------------------------------------------


def test_chunked_responses_are_read_completely() -> None:
    payload = json.dumps({"objects": [{"label": "cat", "box": [1, 2, 3, 4]}] * 40}).encode()

    async def fetch(url_port: int) -> list[bytes]:
        connection = HttpConnection("127.0.0.1", url_port)
        message = get("/x").encoder(f"127.0.0.1:{url_port}")(0)
        bodies = [(await connection.request(message)).body for _ in range(3)]
        connection.close()
        assert connection.opened == 1  # chunked framing kept the connection usable
        return bodies

    with FakeHttpServer(constant(Reply(body=payload, chunked=True))) as server:
        assert loadgen.run(fetch(server.port)) == [payload] * 3
        result = loadgen.run(loadgen.closed_loop(server.url, get("/x"), concurrency=2, requests=30))
    assert result.status_counts == {200: 30} and result.connections_opened == 2


def test_body_delimited_by_close_is_read_and_the_connection_reopened() -> None:
    with FakeHttpServer(constant(Reply(body=b"x" * 5000, no_length=True))) as server:
        result = loadgen.run(loadgen.closed_loop(server.url, get("/x"), concurrency=2, requests=10))
    assert result.status_counts == {200: 10} and result.connections_opened == 10


def test_announced_close_reconnects_without_errors() -> None:
    with FakeHttpServer(constant(Reply(close=True))) as server:
        result = loadgen.run(loadgen.closed_loop(server.url, get("/x"), concurrency=2, requests=20))
        connections, received = server.stats.connections, len(server.received)
    assert result.succeeded == 20 and result.errors == 0 and result.retries == 0
    assert result.connections_opened == connections == 20 == received


def test_silent_close_of_a_kept_alive_connection_is_survived() -> None:
    with FakeHttpServer(constant(Reply(silent_close=True))) as server:
        result = loadgen.run(loadgen.closed_loop(server.url, get("/x"), concurrency=2, requests=30))
        connections, received = server.stats.connections, len(server.received)
    assert result.succeeded == 30 and result.errors == 0
    assert received == 30  # no request was processed twice
    assert result.connections_opened == connections


def test_truncated_response_is_an_error_by_kind_not_a_status() -> None:
    with FakeHttpServer(constant(Reply(body=b"y" * 1000, truncate=True))) as server:
        result = loadgen.run(loadgen.closed_loop(server.url, get("/x"), concurrency=1, requests=5))
    assert result.status_counts == {} and result.succeeded == 0
    assert result.errors_by_kind == {"IncompleteResponse": 5}
    assert result.latency.count == 0 and np.isnan(result.latency.p50_ms)


def test_server_closing_without_a_response_is_counted_once_per_request() -> None:
    with FakeHttpServer(constant(Reply(abort=True))) as server:
        result = loadgen.run(loadgen.closed_loop(server.url, get("/x"), concurrency=1, requests=10))
        received = len(server.received)
    assert result.errors_by_kind == {"ServerClosedConnection": 10}
    assert received == 10 and result.retries == 0  # a fresh connection is never retried


def test_refused_connections_and_timeouts_are_counted_by_kind() -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}"
    refused = loadgen.run(loadgen.closed_loop(nothing_there, get("/x"), concurrency=1, requests=5))
    assert refused.errors_by_kind == {"ConnectionRefusedError": 5}
    assert refused.status_counts == {}
    with FakeHttpServer(constant(Reply(delay=2.0))) as server:
        slow = loadgen.run(
            loadgen.closed_loop(server.url, get("/x"), concurrency=3, requests=3, timeout=0.1)
        )
    assert slow.errors_by_kind == {"TimeoutError": 3} and slow.status_counts == {}


# -- request shapes -----------------------------------------------------------------------------


def _multipart_parts(request: ReceivedRequest) -> list[tuple[str | None, str | None, bytes]]:
    document = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + request.body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(document)
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content(),
        )
        for part in message.iter_parts()
    ]


def test_get_json_and_multipart_requests_are_well_formed() -> None:
    images = [FilePart("a.jpg", b"\xff\xd8A" * 100, "image/jpeg"), FilePart("b.png", b"\x89PNG")]
    with FakeHttpServer(constant(Reply())) as server:
        loadgen.run(loadgen.closed_loop(server.url, get("/noop"), concurrency=1, requests=1))
        loadgen.run(
            loadgen.closed_loop(
                server.url + "/api",
                post_json("/prediction", [{"text": "é"}, {"text": "b"}]),
                concurrency=1,
                requests=2,
            )
        )
        loadgen.run(
            loadgen.closed_loop(
                server.url, post_multipart("/object-detection", images), concurrency=1, requests=3
            )
        )
        received = list(server.received)
    noop, *predictions = received[:3]
    assert (noop.method, noop.path, noop.body) == ("GET", "/noop", b"")
    assert noop.headers["host"] == f"127.0.0.1:{server.port}"
    assert "content-length" not in noop.headers
    assert [r.path for r in predictions] == ["/api/prediction"] * 2
    assert [json.loads(r.body) for r in predictions] == [{"text": "é"}, {"text": "b"}]
    assert predictions[0].headers["content-type"] == "application/json"
    uploads = received[3:]
    assert [_multipart_parts(r) for r in uploads] == [
        [("image", "a.jpg", images[0].content)],
        [("image", "b.png", images[1].content)],
        [("image", "a.jpg", images[0].content)],
    ]
    assert all(int(r.headers["content-length"]) == len(r.body) for r in uploads)


# -- the generator's ceiling ------------------------------------------------------------------


def test_generator_ceiling_against_a_noop_endpoint() -> None:
    with FakeHttpServer(constant(Reply(body=b"{}"))) as server:
        result = loadgen.measure_generator_ceiling(
            server.url, concurrency=8, duration=0.5, warmup=0.1
        )
    assert result.errors == 0 and result.mode == "closed" and result.path == "/noop"
    assert result.throughput_rps > 1000  # generator and fake server share one process here
    assert result.to_dict()["latency"]["count"] == result.succeeded


def test_run_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        loadgen.run(loadgen.closed_loop("http://127.0.0.1:1", get("/"), concurrency=1))
    with pytest.raises(ValueError, match="plain http"):
        loadgen.run(loadgen.closed_loop("https://example.org", get("/"), concurrency=1, requests=1))
    with pytest.raises(ValueError, match="rate"):
        asyncio.run(loadgen.open_loop("http://127.0.0.1:1", get("/"), rate=-1, requests=1))
