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
``frame_burst``) are dropped, with an error message at most once a second; a client sending
messages at more than ``FLOOD_FACTOR`` times the rate (burst included) gets an error and a close
with 1008 (policy violation); no frame for ``idle_timeout_s`` closes with 1000 and the reason.
Text messages over ``MAX_SETTINGS_CHARS`` are refused unparsed. The server's own WebSocket limit
(uvicorn's ``ws_max_size``, 16 MiB) closes bigger messages with 1009 before they are buffered.

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
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import WebSocket, WebSocketDisconnect

from serving.batching import QueueFullError
from serving.detection import ImageDecodeError
from serving.detector import ObjectDetector
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


class StreamObserver(Protocol):
    """Told about connections and frames (metrics); must be cheap."""

    def opened(self) -> None: ...

    def closed(self) -> None: ...

    def frame_received(self) -> None: ...

    def frame_dropped(self) -> None:
        """A frame that will never get a result: replaced, too large, or refused."""


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


class DetectionStream:
    """One accepted WebSocket connection's receive and detect loops."""

    def __init__(
        self,
        websocket: WebSocket,
        detector: ObjectDetector,
        threshold: float,
        limits: StreamLimits,
        observer: StreamObserver | None = None,
    ) -> None:
        self.websocket = websocket
        self.observer: StreamObserver = observer or NullStreamObserver()
        self.detector = detector
        self.threshold = threshold
        self.limits = limits
        self.slot = FrameSlot()
        self.received = 0
        self.processed = 0
        now = time.monotonic()
        self.last_frame_at = now  # the connection counts as the first sign of life
        self.frame_rate = TokenBucket(limits.max_frames_per_s, limits.frame_burst, now)
        self.flood = TokenBucket(
            FLOOD_FACTOR * limits.max_frames_per_s, FLOOD_FACTOR * limits.frame_burst, now
        )
        self.rate_notice_at = -math.inf  # when the last "frames are dropped" notice went

    async def run(self) -> None:
        """Until the client leaves or the stream must close; the socket is closed on return."""
        tasks = (
            asyncio.create_task(self._receive_loop(), name="ws-receive"),
            asyncio.create_task(self._detect_loop(), name="ws-detect"),
            asyncio.create_task(self._idle_watch(), name="ws-idle"),
        )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise what ended the stream
        except WebSocketDisconnect:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _idle_watch(self) -> None:
        """Close the stream once no frame has come for ``idle_timeout_s``.

        One sleeping task per stream, not a timeout around each ``receive()``: ``wait_for``
        makes a task and a timer for every message (about 10 µs each here).
        """
        idle = self.limits.idle_timeout_s
        while True:
            remaining = self.last_frame_at + idle - time.monotonic()
            if remaining <= 0:
                await self._close(CLOSE_NORMAL, f"idle: no frame for {idle:g} s")
                return
            await asyncio.sleep(remaining)

    async def _receive_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            now = time.monotonic()
            data = message.get("bytes")
            number = None
            if data is not None:
                self.last_frame_at = now
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

    async def _detect_loop(self) -> None:
        while True:
            frame, dropped = await self.slot.take()
            try:
                result = await self.detector.detect(frame.data, self.threshold)
            except ImageDecodeError as error:
                self.slot.dropped += dropped  # skipped frames still count toward the next result
                await self._send({"error": str(error), "frame": frame.number})
                continue
            except (QueueFullError, InferenceTimeoutError) as error:
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


class OpenStreams:
    """The live streams of this process, so shutdown can close them with 1001 (going away)."""

    def __init__(self) -> None:
        self._sockets: set[WebSocket] = set()
        self._admitted = 0  # streams open or in their handshake

    def __len__(self) -> int:
        return len(self._sockets)

    def try_admit(self, limit: int) -> bool:
        """Reserve a place for one more stream, if fewer than ``limit`` are open or starting;
        a successful call must be paired with :meth:`release`."""
        if self._admitted >= limit:
            return False
        self._admitted += 1
        return True

    def release(self) -> None:
        self._admitted -= 1

    @contextlib.contextmanager
    def track(self, websocket: WebSocket):  # type: ignore[no-untyped-def]
        self._sockets.add(websocket)
        try:
            yield
        finally:
            self._sockets.discard(websocket)

    async def close_all(self) -> None:
        for websocket in list(self._sockets):
            with contextlib.suppress(Exception):
                await websocket.close(CLOSE_GOING_AWAY, "server shutting down")
        self._sockets.clear()
