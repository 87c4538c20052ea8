"""api.streaming's per-connection limits with a fake socket and detector and a fake clock: the
frame rate limit (drop and count), the flood close (1008), the idle close (1000), settings
messages, and the per-worker stream admission."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from api import streaming
from api.streaming import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    FLOOD_FACTOR,
    MAX_SETTINGS_CHARS,
    DetectionStream,
    OpenStreams,
    StreamLimits,
    TokenBucket,
)
from serving.detector import DetectionResult


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class FakeSocket:
    """Messages in from a queue; JSON and the close recorded (sends after close fail, as
    Starlette's do)."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_json(self, payload: dict[str, Any]) -> None:
        if self.closed is not None:
            raise RuntimeError("send after close")
        self.sent.append(payload)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.closed is not None:
            raise RuntimeError("close after close")
        self.closed = (code, reason or "")

    def frame(self, data: bytes = b"frame") -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "bytes": data})

    def text(self, text: str) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})

    def leave(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})


class InstantDetector:
    async def detect(self, data: bytes, threshold: float) -> DetectionResult:
        await asyncio.sleep(0)
        return DetectionResult([], (4, 3), "1")


LIMITS = StreamLimits(max_frame_bytes=1000, max_frames_per_s=5.0, frame_burst=3, idle_timeout_s=5.0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(streaming, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


async def _run(socket: FakeSocket, limits: StreamLimits = LIMITS, timeout: float = 5.0) -> None:
    stream = DetectionStream(socket, InstantDetector(), 0.5, limits)  # type: ignore[arg-type]
    await asyncio.wait_for(stream.run(), timeout)


def _results(socket: FakeSocket) -> list[dict[str, Any]]:
    return [message for message in socket.sent if "error" not in message]


def _errors(socket: FakeSocket) -> list[dict[str, Any]]:
    return [message for message in socket.sent if "error" in message]


# --- TokenBucket -------------------------------------------------------------------------------


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=5.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.1)  # half a token
    assert bucket.take(0.2)  # one token after 0.2 s at 5/s
    assert not bucket.take(0.2)


def test_token_bucket_refills_up_to_its_capacity_only() -> None:
    bucket = TokenBucket(rate=5.0, capacity=3, now=0.0)
    assert all(bucket.take(0.0) for _ in range(3))
    assert [bucket.take(60.0) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1.0, capacity=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)


# --- DetectionStream ---------------------------------------------------------------------------


def test_frames_over_the_rate_are_dropped_counted_and_reported_once(clock: FakeClock) -> None:
    async def scenario() -> FakeSocket:
        socket = FakeSocket()
        for _ in range(8):  # all at the same instant: 3 pass (the burst), 5 are over the rate
            socket.frame()
        task = asyncio.create_task(_run(socket))
        await asyncio.sleep(0.05)
        clock.now += 1.0  # five tokens later (the bucket holds at most three)
        socket.frame()
        await asyncio.sleep(0.05)
        socket.leave()
        await task
        return socket

    socket = asyncio.run(scenario())
    results, errors = _results(socket), _errors(socket)
    assert errors == [{"error": "over 5 frames/s (burst 3): frames are dropped", "frame": 4}]
    assert results[-1]["frame"] == 9
    assert all(result["frame"] <= 3 for result in results[:-1])
    assert sum(result["dropped"] for result in results) + len(results) == 9
    assert socket.closed is None


def test_the_dropping_notice_comes_at_most_once_a_second(clock: FakeClock) -> None:
    async def scenario() -> FakeSocket:
        socket = FakeSocket()
        task = asyncio.create_task(_run(socket))
        for _ in range(8):  # 5 frames every 0.5 s for 4 s: 40 frames, twice the rate
            for _ in range(5):
                socket.frame()
            await asyncio.sleep(0.02)
            clock.now += 0.5
        socket.leave()
        await task
        return socket

    socket = asyncio.run(scenario())
    notices = _errors(socket)
    assert len(notices) == 4  # at 0, 1, 2 and 3 s
    results = _results(socket)
    assert sum(result["dropped"] for result in results) + len(results) <= 40
    assert socket.closed is None, "twice the rate is not a flood"


def test_a_client_far_over_the_rate_is_closed_with_1008(clock: FakeClock) -> None:
    allowance = int(FLOOD_FACTOR * LIMITS.frame_burst)  # messages at one instant before the close

    async def scenario() -> FakeSocket:
        socket = FakeSocket()
        for _ in range(allowance + 5):
            socket.frame()
        await _run(socket)
        return socket

    socket = asyncio.run(scenario())
    assert socket.closed == (CLOSE_POLICY_VIOLATION, "flood: over 50 messages/s")
    assert _errors(socket)[-1] == {"error": "over 50 messages/s: closing", "frame": allowance + 1}
    assert socket.incoming.qsize() == 4, "nothing is read after the flood message"


def test_settings_messages_count_toward_the_flood_too(clock: FakeClock) -> None:
    async def scenario() -> FakeSocket:
        socket = FakeSocket()
        for _ in range(int(FLOOD_FACTOR * LIMITS.frame_burst) + 1):
            socket.text(json.dumps({"threshold": 0.4}))
        await _run(socket)
        return socket

    socket = asyncio.run(scenario())
    assert socket.closed is not None and socket.closed[0] == CLOSE_POLICY_VIOLATION
    assert _errors(socket)[-1]["frame"] is None


def test_a_stream_without_frames_is_closed_after_the_idle_timeout() -> None:
    limits = StreamLimits(
        max_frame_bytes=1000, max_frames_per_s=5.0, frame_burst=3, idle_timeout_s=0.2
    )

    async def scenario() -> tuple[FakeSocket, float]:
        socket = FakeSocket()
        socket.frame()
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(_run(socket, limits))
        await asyncio.sleep(0.1)
        socket.text(json.dumps({"threshold": 0.3}))  # settings do not keep a stream alive
        await task
        return socket, loop.time() - started

    socket, elapsed = asyncio.run(scenario())
    assert socket.closed == (CLOSE_NORMAL, "idle: no frame for 0.2 s")
    assert 0.2 <= elapsed < 1.0
    assert [result["frame"] for result in _results(socket)] == [1]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "Expecting value"),
        ("x" * (MAX_SETTINGS_CHARS + 1), f"over {MAX_SETTINGS_CHARS} characters"),
        ("[" * 500 + "]" * 500, "list indices"),
        ("null", "not subscriptable"),
        ('{"threshold": NaN}', "between 0 and 1"),
        ('{"threshold": "high"}', "could not convert"),
    ],
    ids=["not-json", "too-long", "deep-nesting", "null", "nan", "not-a-number"],
)
def test_bad_settings_messages_get_an_error_and_the_stream_continues(
    clock: FakeClock, text: str, reason: str
) -> None:
    async def scenario() -> FakeSocket:
        socket = FakeSocket()
        socket.text(text)
        socket.frame()
        task = asyncio.create_task(_run(socket))
        await asyncio.sleep(0.05)
        socket.leave()
        await task
        return socket

    socket = asyncio.run(scenario())
    (error,) = _errors(socket)
    assert error["frame"] is None
    assert error["error"].startswith("bad settings message (frames are binary messages")
    assert reason in error["error"]
    assert [result["frame"] for result in _results(socket)] == [1]


# --- OpenStreams admission ---------------------------------------------------------------------


def test_open_streams_admit_up_to_the_limit_and_reuse_released_places() -> None:
    streams = OpenStreams()
    assert streams.try_admit(2) and streams.try_admit(2)
    assert not streams.try_admit(2)
    streams.release()
    assert streams.try_admit(2)
    assert not streams.try_admit(2)
