"""api.inference.streaming's per-connection limits with a fake socket and detector and a fake
clock: the
frame rate limit (drop and count), the flood close (1008), the idle close (1000) fed only by
frames that decode, the image-signature check, settings messages, the credential re-checks, and
the per-owner and per-worker stream admission and closing by user or credential."""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from api.inference import streaming
from api.inference.streaming import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CREDENTIALS_ENDED,
    FLOOD_FACTOR,
    MAX_SETTINGS_CHARS,
    NOT_AN_IMAGE,
    TOKEN_EXPIRED,
    DetectionStream,
    OpenStreams,
    Revalidation,
    StreamLimits,
    StreamOwner,
    TokenBucket,
    close_reason,
    looks_like_image,
)
from serving.batching import QueueFullError
from serving.detection import CorruptImageError
from serving.detector import DetectionResult

# Starts like a JPEG (the signature check passes); the fake detectors do not decode.
JPEG_LIKE = b"\xff\xd8\xff\xe0 a frame"


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

    def frame(self, data: bytes = JPEG_LIKE) -> None:
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


# --- the image-signature check and the idle clock fed by valid frames ---------------------------


@pytest.mark.parametrize(
    ("data", "image"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", True),
        (b"\x89PNG\r\n\x1a\n\x00\x00", True),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", True),
        (b"x", False),
        (b"", False),
        (b"\xff\xd8", False),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", False),
        (b"GIF89a", False),
    ],
    ids=["jpeg", "png", "webp", "one-byte", "empty", "half-a-jpeg", "riff-wave", "gif"],
)
def test_only_jpeg_png_and_webp_signatures_look_like_images(data: bytes, image: bool) -> None:
    assert looks_like_image(data) is image


class CountingDetector(InstantDetector):
    def __init__(self) -> None:
        self.calls = 0

    async def detect(self, data: bytes, threshold: float) -> DetectionResult:
        self.calls += 1
        return await super().detect(data, threshold)


def test_junk_frames_get_an_error_are_counted_and_never_reach_the_detector(
    clock: FakeClock,
) -> None:
    detector = CountingDetector()

    async def scenario() -> FakeSocket:
        socket = FakeSocket()
        socket.frame(b"x")
        socket.frame(b"\x00" * 100)
        socket.frame()
        stream = DetectionStream(socket, detector, 0.5, LIMITS)  # type: ignore[arg-type]
        task = asyncio.create_task(stream.run())
        await asyncio.sleep(0.05)
        socket.leave()
        await asyncio.wait_for(task, 5)
        return socket

    socket = asyncio.run(scenario())
    assert _errors(socket) == [
        {"error": NOT_AN_IMAGE, "frame": 1},
        {"error": NOT_AN_IMAGE, "frame": 2},
    ]
    assert _results(socket) == [_results(socket)[0]] and _results(socket)[0]["frame"] == 3
    assert _results(socket)[0]["dropped"] == 2, "refused frames count as dropped"
    assert detector.calls == 1


def test_junk_frames_do_not_keep_a_stream_alive() -> None:
    limits = StreamLimits(
        max_frame_bytes=1000, max_frames_per_s=100.0, frame_burst=10, idle_timeout_s=0.3
    )

    async def scenario() -> tuple[FakeSocket, float]:
        socket = FakeSocket()
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(_run(socket, limits))
        while not task.done() and loop.time() - started < 2.0:
            socket.frame(b"x")  # one byte of junk every 20 ms
            await asyncio.sleep(0.02)
        await task
        return socket, loop.time() - started

    socket, elapsed = asyncio.run(scenario())
    assert socket.closed == (CLOSE_NORMAL, "idle: no frame for 0.3 s")
    assert 0.3 <= elapsed < 1.0


class UndecodableDetector:
    """Every frame starts like a JPEG but fails to decode."""

    async def detect(self, data: bytes, threshold: float) -> DetectionResult:
        await asyncio.sleep(0)
        raise CorruptImageError("corrupt or truncated JPEG data")


class FullQueueDetector:
    """Every frame decodes, then the model's queue is full."""

    async def detect(self, data: bytes, threshold: float) -> DetectionResult:
        await asyncio.sleep(0)
        raise QueueFullError("yolos", retry_after=1.0)


@pytest.mark.parametrize(
    ("detector", "kept_alive"),
    [(UndecodableDetector(), False), (FullQueueDetector(), True)],
    ids=["undecodable", "decoded-but-queue-full"],
)
def test_only_frames_that_decode_reset_the_idle_clock(detector: Any, kept_alive: bool) -> None:
    limits = StreamLimits(
        max_frame_bytes=1000, max_frames_per_s=100.0, frame_burst=10, idle_timeout_s=0.3
    )

    async def scenario() -> FakeSocket:
        socket = FakeSocket()
        stream = DetectionStream(socket, detector, 0.5, limits)
        task = asyncio.create_task(stream.run())
        for _ in range(40):  # 0.8 s of frames every 20 ms
            if task.done():
                break
            socket.frame()
            await asyncio.sleep(0.02)
        if not task.done():
            socket.leave()
        await asyncio.wait_for(task, 5)
        return socket

    socket = asyncio.run(scenario())
    if kept_alive:
        assert socket.closed is None
    else:
        assert socket.closed == (CLOSE_NORMAL, "idle: no frame for 0.3 s")


class SlowDetector(InstantDetector):
    async def detect(self, data: bytes, threshold: float) -> DetectionResult:
        await asyncio.sleep(0.4)
        return await super().detect(data, threshold)


def test_a_frame_still_in_the_detector_at_the_idle_time_keeps_the_stream_if_it_decodes() -> None:
    limits = StreamLimits(
        max_frame_bytes=1000, max_frames_per_s=100.0, frame_burst=10, idle_timeout_s=0.2
    )

    async def scenario() -> tuple[FakeSocket, float]:
        socket = FakeSocket()
        socket.frame()
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream = DetectionStream(socket, SlowDetector(), 0.5, limits)  # type: ignore[arg-type]
        await asyncio.wait_for(stream.run(), 5)
        return socket, loop.time() - started

    socket, elapsed = asyncio.run(scenario())
    assert [result["frame"] for result in _results(socket)] == [1]
    assert socket.closed == (CLOSE_NORMAL, "idle: no frame for 0.2 s")
    assert 0.6 <= elapsed < 1.2, "idle counted from the result (0.4 s), not from the handshake"


# --- re-checking the credentials -----------------------------------------------------------------


class FakeCredentialCheck:
    """Answers from a script: True (valid), False (revoked) or an exception (outage)."""

    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _outage() -> Exception:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


SLOW_IDLE = StreamLimits(
    max_frame_bytes=1000, max_frames_per_s=5.0, frame_burst=3, idle_timeout_s=30.0
)


async def _stream_with(
    revalidation: Revalidation, seconds: float
) -> tuple[FakeSocket, float | None]:
    """Run a stream for up to ``seconds``; the socket and when it closed (``None``: open)."""
    socket = FakeSocket()
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream = DetectionStream(
        socket,
        InstantDetector(),  # type: ignore[arg-type]
        0.5,
        SLOW_IDLE,
        revalidation=revalidation,
    )
    task = asyncio.create_task(stream.run())
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        socket.leave()
        await asyncio.wait_for(task, 5)
        return socket, None
    return socket, loop.time() - started


def test_a_revoked_credential_closes_the_stream_with_1008_at_the_next_check() -> None:
    check = FakeCredentialCheck(True, True, False)
    socket, closed_after = asyncio.run(_stream_with(Revalidation(check, period_s=0.1), 3.0))
    assert socket.closed == (CLOSE_POLICY_VIOLATION, CREDENTIALS_ENDED)
    assert _errors(socket) == [{"error": f"stream closed: {CREDENTIALS_ENDED}", "frame": None}]
    assert check.calls == 3
    assert closed_after is not None and 0.3 <= closed_after < 1.0


def test_a_database_outage_during_the_check_does_not_close_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = FakeCredentialCheck(_outage(), TimeoutError(), _outage(), True)
    socket, closed_after = asyncio.run(_stream_with(Revalidation(check, period_s=0.05), 0.6))
    assert closed_after is None and socket.closed is None
    assert _errors(socket) == []
    assert check.calls >= 5, "checked again after each failure"
    assert "could not re-check a stream's credentials" in caplog.text


def test_a_check_slower_than_its_period_is_an_outage_not_a_revocation() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return False

    socket, closed_after = asyncio.run(_stream_with(Revalidation(hangs, period_s=0.1), 0.5))
    assert closed_after is None and socket.closed is None


def test_a_token_closes_the_stream_when_it_expires_without_asking_the_database() -> None:
    check = FakeCredentialCheck(_outage())  # even while the database is down
    revalidation = Revalidation(check, period_s=60.0, expires_in_s=0.2)
    socket, closed_after = asyncio.run(_stream_with(revalidation, 3.0))
    assert socket.closed == (CLOSE_POLICY_VIOLATION, TOKEN_EXPIRED)
    assert _errors(socket) == [{"error": f"stream closed: {TOKEN_EXPIRED}", "frame": None}]
    assert closed_after is not None and 0.2 <= closed_after < 0.8
    assert check.calls == 0


# --- OpenStreams: admission and closing by owner -------------------------------------------------


def test_open_streams_admit_up_to_the_worker_limit_and_reuse_released_places() -> None:
    streams = OpenStreams()
    assert streams.try_admit("a", 10, 2) is None and streams.try_admit("b", 10, 2) is None
    assert streams.try_admit("c", 10, 2) == "worker"
    streams.release("a")
    assert streams.try_admit("c", 10, 2) is None
    assert streams.try_admit("a", 10, 2) == "worker"


def test_open_streams_cap_each_owner_while_others_are_admitted() -> None:
    streams = OpenStreams()
    assert [streams.try_admit("greedy", 2, 64) for _ in range(3)] == [None, None, "user"]
    assert streams.try_admit("polite", 2, 64) is None
    assert streams.admitted("greedy") == 2 and streams.admitted("polite") == 1
    streams.release("greedy")
    assert streams.try_admit("greedy", 2, 64) is None
    for key in ("greedy", "greedy", "polite"):
        streams.release(key)
    assert streams.admitted("greedy") == 0 and streams._admitted_by == {}


def test_close_user_and_close_credential_close_only_the_matching_streams() -> None:
    owners = {
        "alice-token": StreamOwner("user:1", 1, "hash-token"),
        "alice-key": StreamOwner("user:1", 1, "hash-key"),
        "bob": StreamOwner("user:2", 2, "hash-bob"),
    }

    async def scenario() -> tuple[dict[str, FakeSocket], int, int, int]:
        streams = OpenStreams()
        sockets = {name: FakeSocket() for name in owners}
        runs = []
        with contextlib.ExitStack() as tracking:
            for name, owner in owners.items():
                stream = DetectionStream(sockets[name], InstantDetector(), 0.5, SLOW_IDLE)  # type: ignore[arg-type]
                tracking.enter_context(streams.track(stream, owner))
                runs.append(asyncio.create_task(stream.run()))
            await asyncio.sleep(0.01)
            by_credential = await streams.close_credential("hash-token", "logged out")
            await asyncio.sleep(0.05)
            assert sockets["alice-key"].closed is None
            by_user = await streams.close_user(1, "credentials revoked")
            nobody = await streams.close_user(99, "credentials revoked")
            await asyncio.sleep(0.05)
            sockets["bob"].leave()
            await asyncio.wait_for(asyncio.gather(*runs), 5)
        assert len(streams) == 0
        return sockets, by_credential, by_user, nobody

    sockets, by_credential, by_user, nobody = asyncio.run(scenario())
    assert (by_credential, nobody) == (1, 0)
    assert by_user == 2, "both of the user's streams (one already closing)"
    assert sockets["alice-token"].closed == (CLOSE_POLICY_VIOLATION, "logged out")
    assert sockets["alice-token"].sent == [{"error": "stream closed: logged out", "frame": None}]
    assert sockets["alice-key"].closed == (CLOSE_POLICY_VIOLATION, "credentials revoked")
    assert sockets["bob"].closed is None and sockets["bob"].sent == []


def test_close_all_closes_every_stream_with_1001_and_waits_for_them() -> None:
    async def scenario() -> list[FakeSocket]:
        streams = OpenStreams()
        sockets = [FakeSocket(), FakeSocket()]
        runs = []
        with contextlib.ExitStack() as tracking:
            for number, socket in enumerate(sockets):
                stream = DetectionStream(socket, InstantDetector(), 0.5, SLOW_IDLE)  # type: ignore[arg-type]
                tracking.enter_context(streams.track(stream, StreamOwner(f"user:{number}")))
                runs.append(asyncio.create_task(stream.run()))
            await asyncio.sleep(0.01)
            await asyncio.wait_for(streams.close_all(), 5)
            assert all(run.done() for run in runs)
        return sockets

    for socket in asyncio.run(scenario()):
        assert socket.closed == (CLOSE_GOING_AWAY, "server shutting down")
        assert socket.sent == []


def test_a_long_close_reason_is_cut_to_what_a_close_frame_carries() -> None:
    assert close_reason("logged out") == "logged out"
    cut = close_reason("é" * 100)
    assert len(cut.encode("utf-8")) <= 123 and cut == "é" * 61
