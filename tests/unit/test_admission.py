"""api.admission: the in-progress bound per model, with a gated fake ASGI app and a fake clock."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from api.admission import AdmissionMiddleware, ThroughputMeter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedApp:
    """Answers 200 once ``gate`` is set; counts the requests it saw."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.seen = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen += 1
        await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(app: Any, path: str, kind: str = "http") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": kind, "path": path}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def middleware(inner: Any, clock: Clock, **overrides: Any) -> AdmissionMiddleware:
    values: dict[str, Any] = {"limit": 4, "retry_after_s": 2, "max_wait_s": 0.5, "floor": 2}
    return AdmissionMiddleware(inner, clock=clock, **(values | overrides))


def test_beyond_the_limit_requests_get_503_with_retry_after_without_reaching_the_app() -> None:
    async def body() -> None:
        inner, clock = GatedApp(), Clock()
        refused: list[str] = []
        app = middleware(inner, clock, on_reject=refused.append)
        admitted = [asyncio.create_task(call(app, "/prediction")) for _ in range(4)]
        await asyncio.sleep(0)
        status, headers, reply = await call(app, "/prediction/batch")  # same model: refused
        assert status == 503 and headers[b"retry-after"] == b"2"
        assert "overloaded" in json.loads(reply)["detail"]
        assert inner.seen == 4 and refused == ["newsgroups"]
        other = asyncio.create_task(call(app, "/object-detection"))  # another model: admitted
        untouched = asyncio.create_task(call(app, "/posts"))  # not an inference route
        await asyncio.sleep(0)
        assert inner.seen == 6
        inner.gate.set()
        results = await asyncio.gather(*admitted, other, untouched)
        assert [status for status, _, _ in results] == [200] * 6
        assert app.in_progress == {"newsgroups": 0, "yolos": 0}
        assert (await call(app, "/prediction"))[0] == 200  # slots were given back

    asyncio.run(body())


def test_the_bound_follows_measured_throughput_between_floor_and_limit() -> None:
    clock = Clock()
    app = middleware(GatedApp(), clock, limit=100, floor=3, max_wait_s=0.5)
    assert app.bound("yolos") == 100  # nothing measured yet: an idle service takes a burst
    for _ in range(30):  # 30 completions in one second
        app.meters["yolos"].completed()
    clock.now += 1.0
    assert app.bound("yolos") == 15  # 30/s × 0.5 s
    for _ in range(1000):
        app.meters["newsgroups"].completed()
    assert app.bound("newsgroups") == 100  # capped by the limit
    app.meters["yolos"].completed()
    clock.now += 1.0
    assert app.bound("yolos") == 3  # one completion in the last second: the floor
    clock.now += 5.0
    assert app.bound("yolos") == 100  # idle again


def test_the_meter_reports_the_busier_of_the_last_and_the_current_window() -> None:
    clock = Clock()
    meter = ThroughputMeter(clock, window_s=1.0)
    assert meter.rate() is None
    for _ in range(10):
        meter.completed()
    assert meter.rate() == 10.0
    clock.now += 1.2
    meter.completed()
    assert meter.rate() == 10.0
    clock.now += 1.0
    assert meter.rate() == 1.0
    clock.now += 2.5
    assert meter.rate() is None


def test_websockets_pass_untouched_and_bad_bounds_are_refused() -> None:
    async def body() -> None:
        seen: list[str] = []

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"])

        app = middleware(inner, Clock(), limit=1)
        await app({"type": "websocket", "path": "/object-detection"}, None, None)
        assert seen == ["websocket"]

    asyncio.run(body())
    with pytest.raises(ValueError, match="at least 1"):
        middleware(GatedApp(), Clock(), limit=0)
