"""Scenario 4's pieces: unique and repeated bodies, header capture in the load generator."""

from __future__ import annotations

import json

import pytest

from benchmarks import loadgen
from benchmarks.cache_probe import ResponseTally, repeated_bodies, unique_bodies
from benchmarks.http11 import HttpResponse
from benchmarks.payloads import RequestSpec
from tests.unit.benchmarks.fake_http_server import FakeHttpServer, Reply, constant

TEXTS = ('first "quoted" text\nwith a newline', "second text", "third ünïcode")


def test_unique_bodies_are_valid_json_and_all_distinct() -> None:
    body = unique_bodies(TEXTS, "run1-c16")
    texts = [json.loads(body(index))["text"] for index in range(3000)]
    assert len(set(texts)) == 3000
    assert texts[0] == f"{TEXTS[0]} #run1-c16-0"
    assert texts[4] == f"{TEXTS[1]} #run1-c16-4"
    assert unique_bodies(TEXTS, "other")(0) != body(0)
    with pytest.raises(ValueError):
        unique_bodies(TEXTS, 'bad"tag')
    with pytest.raises(ValueError):
        unique_bodies((), "tag")


def test_repeated_bodies_cycle_over_the_first_texts() -> None:
    body = repeated_bodies(TEXTS, 2)
    assert len(body) == 2
    assert [json.loads(body(i))["text"] for i in range(4)] == [TEXTS[0], TEXTS[1]] * 2
    with pytest.raises(ValueError):
        repeated_bodies(TEXTS, 0)


def test_tally_reads_process_time_and_cache_headers_of_successes() -> None:
    tally = ResponseTally()
    tally(HttpResponse(200, b"", True, (("x-process-time", "0.002500"), ("x-cache", "HIT"))))
    tally(HttpResponse(200, b"", True, (("x-cache", "miss"),)))
    tally(HttpResponse(200, b"", True, ()))
    tally(HttpResponse(503, b"", True, (("x-process-time", "9"), ("x-cache", "miss"))))
    assert tally.server_ms == [pytest.approx(2.5)]
    assert tally.to_dict() == {"x_cache": {"absent": 1, "hit": 1, "miss": 1}, "server_samples": 1}


def test_closed_loop_hands_every_measured_response_to_the_hook() -> None:
    reply = Reply(headers=(("X-Process-Time", "0.001000"), ("X-Cache", "hit")))
    tally = ResponseTally()
    request = RequestSpec("POST", "/prediction", repeated_bodies(TEXTS, 3), "application/json")
    with FakeHttpServer(constant(reply)) as server:
        result = loadgen.run(
            loadgen.closed_loop(server.url, request, concurrency=4, requests=50, on_response=tally)
        )
    assert result.succeeded == 50
    assert tally.cache == {"hit": 50}
    assert tally.server_ms == [pytest.approx(1.0)] * 50


def test_warm_up_responses_do_not_reach_the_hook() -> None:
    seen: list[int] = []
    with FakeHttpServer(constant(Reply(delay=0.01))) as server:
        result = loadgen.run(
            loadgen.closed_loop(
                server.url,
                RequestSpec("GET", "/"),
                concurrency=1,
                duration=0.2,
                warmup=0.1,
                on_response=lambda response: seen.append(response.status),
            )
        )
    assert len(seen) == result.sent and 0 < len(seen) < len(server.received)
