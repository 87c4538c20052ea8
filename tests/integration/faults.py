"""Load for the fault tests: closed-loop HTTP and WebSocket clients that record every answer.

Every request gets an entry: its start and end (seconds on the monotonic clock), its status or
the exception that replaced one, and the model version of a 200. A test injects a fault while
the load runs and then checks the record: no 500, nothing unanswered, recovery time.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from PIL import Image


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all (the ``error`` says why)
    version: str | None = None
    retry_after: str | None = None
    cache: str | None = None  # X-Cache
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Record:
    answers: list[Answer] = field(default_factory=list)

    def statuses(self) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for answer in self.answers:
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return counts

    def started_between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.started < end]

    def last_failure_end(self) -> float | None:
        failures = [a.ended for a in self.answers if a.status != 200]
        return max(failures) if failures else None


async def post_texts(
    client: httpx.AsyncClient,
    record: Record,
    texts: Callable[[], str],
    stop: asyncio.Event,
    timeout: float,
) -> None:
    """One closed-loop client: POST /prediction until ``stop``; every answer recorded."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            reply = await client.post("/prediction", json={"text": texts()}, timeout=timeout)
        except httpx.HTTPError as error:
            record.answers.append(Answer(started, time.monotonic(), None, error=repr(error)))
            await asyncio.sleep(0.05)
            continue
        version = reply.json().get("model_version") if reply.status_code == 200 else None
        record.answers.append(
            Answer(
                started,
                time.monotonic(),
                reply.status_code,
                version=version,
                retry_after=reply.headers.get("retry-after"),
                cache=reply.headers.get("x-cache"),
            )
        )
        if reply.status_code != 200:
            await asyncio.sleep(0.02)  # a real client backs off a little


def numbered_texts(prefix: str) -> Callable[[], str]:
    """A new text per call (every one a cache miss)."""
    counter = itertools.count()
    return lambda: f"{prefix} computer memory graphics card {next(counter)}"


def cycling_texts(count: int) -> Callable[[], str]:
    """The same ``count`` texts over and over (cache hits once each was seen)."""
    cycle = itertools.cycle([f"repeated space shuttle orbit {i}" for i in range(count)])
    return lambda: next(cycle)


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@dataclass
class StreamRecord:
    results: list[float] = field(default_factory=list)  # arrival time of each result
    errors: list[str] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)
    connect_failures: list[str] = field(default_factory=list)
    longest_silence: float = 0.0  # longest wait for any message while frames were being sent


async def stream_frames(
    ws_url: str, record: StreamRecord, stop: asyncio.Event, interval: float
) -> None:
    """A camera-like client: one frame every ``interval``; reconnects after a close (as the page
    does). The longest wait for any message is recorded (a hang shows there)."""
    frame = jpeg((30, 120, 200))
    while not stop.is_set():
        try:
            async with websockets.connect(f"{ws_url}/object-detection", max_size=None) as socket:
                await _pump(socket, frame, record, stop, interval)
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is not None:
                record.close_codes.append(closed.rcvd.code)
        except (OSError, websockets.InvalidHandshake, TimeoutError) as error:
            record.connect_failures.append(repr(error))
        if not stop.is_set():
            await asyncio.sleep(0.3)


async def _pump(
    socket: Any,
    frame: bytes,
    record: StreamRecord,
    stop: asyncio.Event,
    interval: float,
) -> None:
    async def send() -> None:
        while not stop.is_set():
            await socket.send(frame)
            await asyncio.sleep(interval)

    sender = asyncio.create_task(send())
    try:
        last = time.monotonic()
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(socket.recv(), 0.5))
            except TimeoutError:
                record.longest_silence = max(record.longest_silence, time.monotonic() - last)
                continue
            now = time.monotonic()
            record.longest_silence = max(record.longest_silence, now - last)
            last = now
            if "error" in message:
                record.errors.append(message["error"])
            else:
                record.results.append(now)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
