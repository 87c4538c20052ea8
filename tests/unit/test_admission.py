"""api.inference.admission: the in-progress bound per model, with a gated fake ASGI app and a fake
clock; bodies read (within their deadline, a few per client address) before a slot is taken, then
replayed to the app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from api.inference.admission import AdmissionMiddleware, ThroughputMeter, client_address
from api.platform.body_limit import BodyLimits
from tests.helpers.asgi import ScriptedReceive


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


def scope(path: str, kind: str = "http", client: str = "127.0.0.1", **headers: str) -> Any:
    encoded = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": kind, "path": path, "headers": encoded, "client": (client, 50000)}


async def call(
    app: Any, path: str, kind: str = "http", receive: Any = None, **scope_args: Any
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def complete_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(path, kind, **scope_args), receive or complete_body, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


LIMITS = BodyLimits(limit=100, timeout_s=5.0, path_limits={"/object-detection": 1000})


def middleware(inner: Any, clock: Clock, **overrides: Any) -> AdmissionMiddleware:
    values: dict[str, Any] = {
        "limit": 4,
        "retry_after_s": 2,
        "max_wait_s": 0.5,
        "floor": 2,
        "body_limits": LIMITS,
    }
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
        await app(scope("/object-detection", "websocket"), None, None)
        assert seen == ["websocket"]

    asyncio.run(body())
    with pytest.raises(ValueError, match="at least 1"):
        middleware(GatedApp(), Clock(), limit=0)
    with pytest.raises(ValueError, match="at least 1"):
        middleware(GatedApp(), Clock(), max_receiving_per_client=0)


# --- bodies: read before the slot, replayed after it -------------------------------------------


class ReadingApp:
    """Reads the body to its end, then waits for the disconnect (as api/inference/disconnect.py
    does)
    unless told not to; answers 200 with the body. Records what it received and the bound's use
    at its start."""

    def __init__(self, wait_for_disconnect: bool = False) -> None:
        self.wait_for_disconnect = wait_for_disconnect
        self.messages: list[dict[str, Any]] = []
        self.admission: AdmissionMiddleware | None = None
        self.in_progress_at_start: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.admission is not None:
            self.in_progress_at_start.append(sum(self.admission.in_progress.values()))
        body = b""
        while True:
            message = await receive()
            self.messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if self.wait_for_disconnect:
            self.messages.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def test_the_fast_path_refusal_reads_no_body() -> None:
    async def body() -> None:
        inner = GatedApp()
        app = middleware(inner, Clock())
        admitted = [asyncio.create_task(call(app, "/prediction")) for _ in range(4)]
        await asyncio.sleep(0)
        unread = ScriptedReceive((b'{"text": "x"}', None))
        status, headers, _ = await call(app, "/prediction", receive=unread)
        assert status == 503 and headers[b"retry-after"] == b"2"
        assert unread.calls == 0
        inner.gate.set()
        await asyncio.gather(*admitted)

    asyncio.run(body())


def test_a_slow_body_holds_no_slot_and_reaches_the_app_whole_then_the_disconnect() -> None:
    async def body() -> None:
        reader, gated = ReadingApp(wait_for_disconnect=True), GatedApp()

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            target = reader if scope["path"] == "/prediction/batch" else gated
            await target(scope, receive, send)

        app = middleware(inner, Clock())
        reader.admission = app
        rest = asyncio.Event()
        slow = ScriptedReceive((b'{"text": ', None), (b'"slow"}', rest))
        slow_call = asyncio.create_task(call(app, "/prediction/batch", receive=slow))
        await asyncio.sleep(0)
        assert app.in_progress["newsgroups"] == 0 and app.receiving == {"127.0.0.1": 1}
        assert reader.messages == []  # the app has not been called yet
        # Every slot is still there for others while the slow body trickles in.
        others = [asyncio.create_task(call(app, "/prediction")) for _ in range(3)]
        await asyncio.sleep(0)
        assert app.in_progress["newsgroups"] == 3
        rest.set()
        await asyncio.sleep(0.01)
        assert reader.in_progress_at_start == [4]  # it took its slot once the body was in
        assert app.receiving == {}
        slow.gone.set()
        status, _, echoed = await slow_call
        assert status == 200 and echoed == b'{"text": "slow"}'
        # The app got the messages as they came, then the server's own disconnect.
        assert [m["type"] for m in reader.messages] == ["http.request"] * 2 + ["http.disconnect"]
        assert [m["more_body"] for m in reader.messages[:2]] == [True, False]
        gated.gate.set()
        await asyncio.gather(*others)
        assert app.in_progress["newsgroups"] == 0

    asyncio.run(body())


def test_the_bound_is_checked_again_once_the_body_is_in() -> None:
    async def body() -> None:
        inner = GatedApp()
        app = middleware(inner, Clock())
        rest = asyncio.Event()
        slow = ScriptedReceive((b"{", None), (b"}", rest))
        slow_call = asyncio.create_task(call(app, "/prediction", receive=slow))
        await asyncio.sleep(0)
        admitted = [asyncio.create_task(call(app, "/prediction")) for _ in range(4)]
        await asyncio.sleep(0)
        rest.set()
        status, headers, _ = await slow_call
        assert status == 503 and headers[b"retry-after"] == b"2"
        assert inner.seen == 4 and app.refused["newsgroups"] == 1
        inner.gate.set()
        await asyncio.gather(*admitted)

    asyncio.run(body())


def test_a_body_not_received_within_the_deadline_gets_408_and_never_a_slot() -> None:
    async def body() -> None:
        inner = GatedApp()
        limits = BodyLimits(limit=100, timeout_s=0.05)
        app = middleware(inner, Clock(), body_limits=limits)
        never = ScriptedReceive((b"{", None), (b"}", asyncio.Event()))
        started = asyncio.get_running_loop().time()
        status, headers, reply = await call(app, "/prediction", receive=never)
        elapsed = asyncio.get_running_loop().time() - started
        assert status == 408 and headers[b"connection"] == b"close"
        assert json.loads(reply) == {"detail": "request body not received within 0.05 s"}
        assert 0.05 <= elapsed < 0.5
        assert inner.seen == 0 and app.in_progress["newsgroups"] == 0 and app.receiving == {}

    asyncio.run(body())


def test_a_declared_length_over_the_limit_goes_to_the_app_unread_and_without_a_slot() -> None:
    async def body() -> None:
        reader = ReadingApp()
        app = middleware(reader, Clock())
        reader.admission = app
        unread = ScriptedReceive((b"x" * 101, None))
        status, _, _ = await call(app, "/prediction", receive=unread, content_length="101")
        assert status == 200  # the fake app answers; the real one's body limit says 413
        assert reader.in_progress_at_start == [0] and unread.calls == 1  # the app's read only
        # The upload route's own limit applies there.
        reader.in_progress_at_start.clear()
        upload = ScriptedReceive((b"x" * 1000, None))
        await call(app, "/object-detection", receive=upload, content_length="1001")
        assert upload.calls == 1 and reader.in_progress_at_start == [0]

    asyncio.run(body())


def test_a_chunked_body_is_buffered_only_to_one_byte_past_the_limit() -> None:
    async def body() -> None:
        reader = ReadingApp()
        app = middleware(reader, Clock())
        chunks = ScriptedReceive(*[(b"a" * 60, None) for _ in range(5)])
        assert (await call(app, "/prediction", receive=chunks))[0] == 200
        # Read by the middleware: 60 + 60 > 100, cut at 101; the app's next read is the
        # server's (its body limit refuses the request at 101 bytes already).
        bodies = [len(m["body"]) for m in reader.messages]
        assert bodies == [60, 41, 60, 60, 60] and chunks.calls == 5
        assert reader.messages[1]["more_body"] is True

    asyncio.run(body())


def test_a_client_that_leaves_mid_body_gets_no_answer_and_takes_no_slot() -> None:
    async def body() -> None:
        inner = GatedApp()
        app = middleware(inner, Clock())
        leaving = ScriptedReceive((b"{", None), last=False)
        leaving.gone.set()
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope("/prediction"), leaving, send)
        assert sent == [] and inner.seen == 0 and app.receiving == {}

    asyncio.run(body())


def test_one_address_may_have_only_so_many_bodies_being_received() -> None:
    async def body() -> None:
        app = middleware(ReadingApp(), Clock(), max_receiving_per_client=2)
        gate = asyncio.Event()
        slow = [
            asyncio.create_task(
                call(
                    app,
                    "/prediction",
                    receive=ScriptedReceive((b"{", None), (b"}", gate)),
                    client=host,
                )
            )
            for host in ("10.0.0.1", "10.0.0.1", "2001:db8::1", "2001:db8::2")
        ]
        await asyncio.sleep(0)
        assert app.receiving == {"10.0.0.1": 2, "2001:db8::/64": 2}
        for host in ("10.0.0.1", "2001:db8::3"):  # a third from the same address, or /64
            status, headers, reply = await call(app, "/object-detection", client=host)
            assert status == 503 and headers[b"retry-after"] == b"2", host
            assert "too many request bodies" in json.loads(reply)["detail"]
        assert app.refused == {"newsgroups": 0, "yolos": 2}
        # Another address is not affected, and a body read at once counts only while read.
        assert (await call(app, "/prediction", client="10.0.0.2"))[0] == 200
        gate.set()
        assert [status for status, _, _ in await asyncio.gather(*slow)] == [200] * 4
        assert app.receiving == {}
        assert (await call(app, "/prediction", client="10.0.0.1"))[0] == 200

    asyncio.run(body())


def test_bodies_are_counted_per_client_host_with_ipv6_per_64() -> None:
    def address(host: str | None) -> str:
        return client_address({"client": (host, 1) if host is not None else None})

    assert address("203.0.113.7") == "203.0.113.7"
    assert address("2001:db8:1:2::1") == address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("::ffff:203.0.113.7") == "203.0.113.7"
    assert address(None) == address("") == "unknown"
