"""Streaming detection over one WebSocket: newest frame wins, results as JSON.

Protocol (the book's chapter 13, extended):

* client → server: binary messages, each one JPEG/PNG/WebP frame; optionally a text message
  ``{"threshold": 0.5}`` to change the score threshold mid-stream;
* server → client: one JSON message per processed frame,
  ``{"frame": n, "objects": [{"box", "label", "score"}], "image_size": [w, h],
  "latency_ms": ..., "dropped": k}`` where ``frame`` numbers received frames (from 1),
  ``latency_ms`` runs from the frame's arrival to its result and ``dropped`` counts the frames
  skipped since the previous result (replaced while waiting, refused as too large, over the rate
  limit, or refused by a full queue), so results' ``dropped`` plus the results add up to the
  frames sent; errors are ``{"error": "...", "frame": n}`` (``frame`` is ``null`` for a bad text
  message) and the stream continues.

Limits per connection (:class:`StreamLimits`, from the settings): frames over
``max_frame_bytes`` get an error; frames beyond ``max_frames_per_s`` (after a burst of
``frame_burst``) are dropped, with an error message at most once a second; a frame that does not
start with a JPEG, PNG or WebP signature gets an error on arrival (it never takes the frame slot
or a decode); a client sending messages at more than ``FLOOD_FACTOR`` times the rate (burst
included) gets an error and a close with 1008 (policy violation). No *valid* frame for
``idle_timeout_s`` closes with 1000 and the reason: only a frame that decodes (a result, or a
decoded frame refused by a full queue or a timeout) resets the idle clock, so junk frames and
settings messages do not keep a stream alive (they still count toward the rate and flood
limits). Text messages over ``MAX_SETTINGS_CHARS`` are refused unparsed. The server's own
WebSocket limit (uvicorn's ``ws_max_size``, 16 MiB) closes bigger messages with 1009 before they
are buffered.

Credentials (:class:`Revalidation`, authenticated streams only): every ``period_s`` the stream
re-checks the credential it was opened with, and a token's expiry is checked on time; an expired
or revoked credential (or a deactivated user) gets an error message and a close with 1008. A
check that cannot tell (the database is unreachable) is logged and retried next period: an
outage does not close healthy streams. :class:`OpenStreams` knows each stream's owner, so a
logout or a revocation closes the streams of this worker at once (``api/accounts/revocation.py``).

Backpressure: at most one frame waits per connection, and a frame that arrives while one is
waiting replaces it (the book's queue kept the older frame, which shows stale images). So a slow
model never builds a backlog and latency does not grow with the stream's length. Frames of every
connection go through the same per-model micro-batcher as REST requests.

When Triton is unreachable the server sends an error message and closes with 1011; the client
reconnects when it wants (the page does after a pause).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fastapi import WebSocket, WebSocketDisconnect

from api.db.engine import is_unavailable
from serving.batching import QueueFullError
from serving.detection import ImageDecodeError
from serving.detector import ACCEPTED_FORMATS, ObjectDetector
from serving.errors import InferenceTimeoutError, InferenceUnavailableError, ServingError

logger = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013

# A client sending messages this many times faster than the frame rate limit is closed.
FLOOD_FACTOR = 10
# Settings messages are tiny ({"threshold": 0.5}); longer text is refused before parsing.
MAX_SETTINGS_CHARS = 1024
# A stream dropping frames over the rate hears about it at most this often.
RATE_NOTICE_INTERVAL_S = 1.0
# A stream told to end (logout, revocation, shutdown) gives its client this long to take the
# notice and the close frame; a client that does not read cannot hold it longer.
END_TIMEOUT_S = 5.0
# A close frame's reason: at most 123 bytes of UTF-8.
MAX_CLOSE_REASON_BYTES = 123

NOT_AN_IMAGE = f"not a recognised image (accepted: {', '.join(ACCEPTED_FORMATS)})"
CREDENTIALS_ENDED = "credentials expired or revoked"
TOKEN_EXPIRED = "token expired"


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts with a JPEG, PNG or WebP signature (the detector's formats): a
    check of a few bytes, so junk is refused before it takes the frame slot or a decode."""
    return (
        data.startswith(b"\xff\xd8\xff")  # JPEG (SOI, then a marker)
        or data.startswith(b"\x89PNG\r\n\x1a\n")
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame can carry."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return text
    return encoded[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


class StreamObserver(Protocol):
    """Told about connections and frames (metrics); must be cheap."""

    def opened(self) -> None: ...

    def closed(self) -> None: ...

    def frame_received(self) -> None: ...

    def frame_dropped(self) -> None:
        """A frame that will never get a result: replaced, too large, not an image, or refused."""


class NullStreamObserver:
    def opened(self) -> None:
        pass

    def closed(self) -> None:
        pass

    def frame_received(self) -> None:
        pass

    def frame_dropped(self) -> None:
        pass


@dataclass(frozen=True)
class StreamLimits:
    """What one connection may send (see the module's docstring)."""

    max_frame_bytes: int
    max_frames_per_s: float
    frame_burst: int
    idle_timeout_s: float


# ``True``: the credential is still valid; ``False``: expired, revoked or its user inactive;
# raises: it could not be checked (the database is unreachable), so try again later.
CredentialCheck = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Revalidation:
    """How an authenticated stream re-checks its credential (see the module's docstring)."""

    check: CredentialCheck
    period_s: float
    # A token's remaining lifetime at the handshake: the stream closes when it runs out, without
    # waiting for the next period (API keys do not expire: ``None``).
    expires_in_s: float | None = None


class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; starts full (times: ``time.monotonic()``)."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Frame:
    number: int
    data: bytes
    received: float


@dataclass
class FrameSlot:
    """Holds at most one frame; putting a frame into a full slot replaces (drops) the old one."""

    frame: Frame | None = None
    dropped: int = 0  # frames replaced or refused since the last result
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, frame: Frame) -> bool:
        """Hold ``frame``; whether it replaced (dropped) a waiting one."""
        replaced = self.frame is not None
        if replaced:
            self.dropped += 1
        self.frame = frame
        self.ready.set()
        return replaced

    async def take(self) -> tuple[Frame, int]:
        """The waiting frame and how many frames were skipped since the previous one taken."""
        while self.frame is None:
            self.ready.clear()
            await self.ready.wait()
        frame, self.frame = self.frame, None
        dropped, self.dropped = self.dropped, 0
        return frame, dropped


@dataclass(frozen=True)
class StreamEnd:
    """Why a stream was told to end (see :meth:`DetectionStream.end`)."""

    code: int
    reason: str
    notice: bool


class DetectionStream:
    """One accepted WebSocket connection's receive, detect, idle and credential loops."""

    def __init__(
        self,
        websocket: WebSocket,
        detector: ObjectDetector,
        threshold: float,
        limits: StreamLimits,
        observer: StreamObserver | None = None,
        revalidation: Revalidation | None = None,
    ) -> None:
        self.websocket = websocket
        self.observer: StreamObserver = observer or NullStreamObserver()
        self.detector = detector
        self.threshold = threshold
        self.limits = limits
        self.revalidation = revalidation
        self.slot = FrameSlot()
        self.received = 0
        self.processed = 0
        now = time.monotonic()
        self.last_valid_frame_at = now  # the connection counts as the first sign of life
        self.expires_at = (
            now + revalidation.expires_in_s
            if revalidation is not None and revalidation.expires_in_s is not None
            else None
        )
        self.frame_rate = TokenBucket(limits.max_frames_per_s, limits.frame_burst, now)
        self.flood = TokenBucket(
            FLOOD_FACTOR * limits.max_frames_per_s, FLOOD_FACTOR * limits.frame_burst, now
        )
        self.rate_notice_at = -math.inf  # when the last "frames are dropped" notice went
        self._not_detecting = asyncio.Event()  # cleared while a frame is in the detector
        self._not_detecting.set()
        self._end: StreamEnd | None = None
        self._end_requested = asyncio.Event()
        self.finished = asyncio.Event()  # set once run() has returned

    def end(self, code: int, reason: str, *, notice: bool = True) -> None:
        """Ask the stream to stop (returns at once): its loops stop, then the client gets an
        error message naming ``reason`` (with ``notice``) and a close with ``code``. A stream
        not yet running stops as soon as it starts."""
        if self._end is None:
            self._end = StreamEnd(code, close_reason(reason), notice)
        self._end_requested.set()

    async def run(self) -> None:
        """Until the client leaves or the stream must close; the socket is closed on return."""
        loops = [
            asyncio.create_task(self._receive_loop(), name="ws-receive"),
            asyncio.create_task(self._detect_loop(), name="ws-detect"),
            asyncio.create_task(self._idle_watch(), name="ws-idle"),
        ]
        if self.revalidation is not None:
            loops.append(
                asyncio.create_task(self._revalidate_loop(self.revalidation), name="ws-credential")
            )
        ending = asyncio.create_task(self._end_requested.wait(), name="ws-end")
        try:
            done, _ = await asyncio.wait([*loops, ending], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise what ended the stream
        except WebSocketDisconnect:
            pass
        finally:
            for task in (*loops, ending):
                task.cancel()
            await asyncio.gather(*loops, ending, return_exceptions=True)
            if self._end is not None:
                await self._finish_end(self._end)
            self.finished.set()

    async def _finish_end(self, end: StreamEnd) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(END_TIMEOUT_S):
                if end.notice:
                    await self._send({"error": f"stream closed: {end.reason}", "frame": None})
                await self._close(end.code, end.reason)

    async def _idle_watch(self) -> None:
        """Close the stream once no valid frame has come for ``idle_timeout_s``.

        One sleeping task per stream, not a timeout around each ``receive()``: ``wait_for``
        makes a task and a timer for every message (about 10 µs each here). A frame still in
        the detector when the time is up decides: the stream lives on if it decodes.
        """
        idle = self.limits.idle_timeout_s
        while True:
            remaining = self.last_valid_frame_at + idle - time.monotonic()
            if remaining <= 0:
                if not self._not_detecting.is_set():
                    await self._not_detecting.wait()
                    continue
                await self._close(CLOSE_NORMAL, f"idle: no frame for {idle:g} s")
                return
            await asyncio.sleep(remaining)

    async def _revalidate_loop(self, revalidation: Revalidation) -> None:
        """Re-check the credential every ``period_s`` and at a token's expiry; close with 1008
        once it is no longer valid. A check that fails (database down, or slower than a
        period) is logged and tried again next period: the stream stays open."""
        period = revalidation.period_s
        while True:
            wait, expiring = period, False
            if self.expires_at is not None:
                left = self.expires_at - time.monotonic()
                expiring = left <= period
                wait = max(0.0, left) if expiring else period
            await asyncio.sleep(wait)
            if expiring:  # known here (the clock may wake a hair early): no database needed
                self.end(CLOSE_POLICY_VIOLATION, TOKEN_EXPIRED)
                return
            try:
                async with asyncio.timeout(period):
                    valid = await revalidation.check()
            except Exception as error:  # an outage must not close healthy streams
                if is_unavailable(error) or isinstance(error, TimeoutError):
                    logger.warning(
                        "could not re-check a stream's credentials (again in %g s): %r",
                        period,
                        error,
                    )
                else:
                    logger.exception("re-checking a stream's credentials failed")
                continue
            if not valid:
                self.end(CLOSE_POLICY_VIOLATION, CREDENTIALS_ENDED)
                return

    async def _receive_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            now = time.monotonic()
            data = message.get("bytes")
            number = None
            if data is not None:
                self.received += 1
                self.observer.frame_received()
                number = self.received
            if not self.flood.take(now):
                if data is not None:
                    self._drop()
                rate = self.flood.rate
                await self._send({"error": f"over {rate:g} messages/s: closing", "frame": number})
                await self._close(CLOSE_POLICY_VIOLATION, f"flood: over {rate:g} messages/s")
                return
            if data is not None:
                await self._on_frame(data, now)
            elif message.get("text") is not None:
                await self._on_settings(message["text"])

    def _drop(self) -> None:
        """The frame just received will never get a result: count it for the next one."""
        self.slot.dropped += 1
        self.observer.frame_dropped()

    async def _on_frame(self, data: bytes, now: float) -> None:
        if not self.frame_rate.take(now):
            self._drop()
            if now - self.rate_notice_at >= RATE_NOTICE_INTERVAL_S:  # not one per frame
                self.rate_notice_at = now
                limits = self.limits
                await self._send(
                    {
                        "error": f"over {limits.max_frames_per_s:g} frames/s (burst "
                        f"{limits.frame_burst}): frames are dropped",
                        "frame": self.received,
                    }
                )
            return
        if len(data) > self.limits.max_frame_bytes:
            self._drop()
            limit = self.limits.max_frame_bytes
            await self._send({"error": f"frame over {limit} bytes", "frame": self.received})
            return
        if not looks_like_image(data):
            self._drop()
            await self._send({"error": NOT_AN_IMAGE, "frame": self.received})
            return
        if self.slot.put(Frame(self.received, data, now)):
            self.observer.frame_dropped()

    async def _on_settings(self, text: str) -> None:
        try:
            if len(text) > MAX_SETTINGS_CHARS:
                raise ValueError(f"over {MAX_SETTINGS_CHARS} characters")
            settings = json.loads(text)
            threshold = float(settings["threshold"])
            if not 0.0 <= threshold <= 1.0:
                raise ValueError("threshold must be between 0 and 1")
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            hint = 'frames are binary messages, settings JSON like {"threshold": 0.5}'
            await self._send({"error": f"bad settings message ({hint}): {error}", "frame": None})
            return
        self.threshold = threshold

    async def _send(self, payload: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.websocket.send_json(payload)

    async def _close(self, code: int, reason: str) -> None:
        """Close once (the other loop may be closing too); a client already gone is fine."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.websocket.close(code, reason)

    def _decoded(self) -> None:
        """The frame in the detector decoded: the stream is alive (the idle clock restarts)."""
        self.last_valid_frame_at = time.monotonic()

    async def _detect_loop(self) -> None:
        while True:
            frame, dropped = await self.slot.take()
            self._not_detecting.clear()
            try:
                result = await self.detector.detect(frame.data, self.threshold)
            except ImageDecodeError as error:
                self.slot.dropped += dropped  # skipped frames still count toward the next result
                await self._send({"error": str(error), "frame": frame.number})
                continue
            except (QueueFullError, InferenceTimeoutError) as error:
                self._decoded()  # refused after decoding: a valid frame all the same
                self.slot.dropped += dropped + 1  # carried to the next result
                self.observer.frame_dropped()
                await self._send({"error": str(error), "frame": frame.number})
                continue
            except InferenceUnavailableError as error:
                await self._send({"error": str(error), "frame": frame.number})
                await self._close(CLOSE_INTERNAL_ERROR, "inference unavailable")
                return
            except ServingError as error:
                self.slot.dropped += dropped
                await self._send({"error": str(error), "frame": frame.number})
                continue
            finally:
                self._not_detecting.set()
            self._decoded()
            self.processed += 1
            await self._send(
                {
                    "frame": frame.number,
                    "objects": [
                        {"box": list(obj.box), "label": obj.label, "score": obj.score}
                        for obj in result.objects
                    ],
                    "image_size": list(result.image_size),
                    "latency_ms": (time.monotonic() - frame.received) * 1000.0,
                    "dropped": dropped,
                }
            )


AdmissionRefusal = Literal["user", "worker"]


@dataclass(frozen=True)
class StreamOwner:
    """Who opened a stream: ``key`` is what the per-user cap counts (``user:<id>``, or
    ``address:<ip>`` when inference is open); an authenticated stream also has its user's id
    and the stored hash of the credential it was opened with (access token or API key)."""

    key: str
    user_id: int | None = None
    credential_hash: str | None = field(default=None, repr=False)


class OpenStreams:
    """This worker's streams: admission (per owner and in all), and closing them by owner or
    credential (logout, revocation) or all at once (shutdown, 1001)."""

    def __init__(self) -> None:
        self._streams: dict[DetectionStream, StreamOwner] = {}
        self._admitted = 0  # streams open or in their handshake
        self._admitted_by: dict[str, int] = {}  # the same, per owner key (no zero entries)

    def __len__(self) -> int:
        return len(self._streams)

    def admitted(self, key: str) -> int:
        """Streams of ``key`` open or in their handshake."""
        return self._admitted_by.get(key, 0)

    def try_admit(self, key: str, per_owner: int, limit: int) -> AdmissionRefusal | None:
        """Reserve a place for one more stream of ``key``: ``None`` when reserved (pair it with
        :meth:`release`), else the cap that refused it: ``"user"`` (``per_owner`` streams of
        ``key`` are open or starting) or ``"worker"`` (``limit`` streams in all)."""
        held = self._admitted_by.get(key, 0)
        if held >= per_owner:
            return "user"
        if self._admitted >= limit:
            return "worker"
        self._admitted += 1
        self._admitted_by[key] = held + 1
        return None

    def release(self, key: str) -> None:
        self._admitted -= 1
        held = self._admitted_by.pop(key) - 1
        if held:
            self._admitted_by[key] = held

    @contextlib.contextmanager
    def track(self, stream: DetectionStream, owner: StreamOwner) -> Iterator[None]:
        self._streams[stream] = owner
        try:
            yield
        finally:
            self._streams.pop(stream, None)

    async def close_user(self, user_id: int, reason: str) -> int:
        """Close every stream of the user (1008, an error message naming ``reason`` first);
        how many were told to close. Returns at once: each stream sends its own close."""
        return self._end(lambda owner: owner.user_id == user_id, reason)

    async def close_credential(self, credential_hash: str, reason: str) -> int:
        """Close the streams opened with the credential whose stored hash is
        ``credential_hash`` (as :meth:`close_user`)."""
        return self._end(lambda owner: owner.credential_hash == credential_hash, reason)

    def _end(self, matches: Callable[[StreamOwner], bool], reason: str) -> int:
        streams = [stream for stream, owner in self._streams.items() if matches(owner)]
        for stream in streams:
            stream.end(CLOSE_POLICY_VIOLATION, reason)
        return len(streams)

    async def close_all(self) -> None:
        """Close every stream with 1001 (going away) and wait (bounded) until they have."""
        streams = list(self._streams)
        for stream in streams:
            stream.end(CLOSE_GOING_AWAY, "server shutting down", notice=False)
        if streams:
            waiters = [asyncio.create_task(stream.finished.wait()) for stream in streams]
            _, pending = await asyncio.wait(waiters, timeout=END_TIMEOUT_S + 1.0)
            for waiter in pending:
                waiter.cancel()
