"""WebSocket streams (scenario 3): N clients each sending camera frames at a fixed rate.

Each stream is one asyncio client (the ``websockets`` package) on its own connection to the
streaming endpoint (protocol in ``api/inference/streaming.py``). It first sends the threshold as a
text message, then binary frames on a fixed schedule, open loop: frame ``k`` is sent at
``start + phase + k / fps`` whatever the replies (the streams' phases are spread over one frame
interval, as independent cameras would be). A receiver reads the JSON results meanwhile.

Frames scheduled during the warm-up are not counted. For the measured frames:

* **processed fps**: the sum over the streams of each stream's result rate in the window, which
  runs from the end of the warm-up to the planned end. A stream's rate is measured from its
  first result in the window to its last: results after the first, divided by the time between
  them. A stream has one frame in the model at a time, so its results come once per batch cycle
  (about 1.3 s with 4 streams here), and counting the results that land in a fixed window
  instead would read one cycle more or less depending on where the window's edges fall (7 or 8
  results for 7.7 cycles in a 10 s window: −9 % or +4 %). A stream with fewer than two results
  in the window counts them over the whole window;
* **dropped**: measured frames sent that got no result: skipped by the server (it keeps only the
  newest waiting frame; the results' ``dropped`` fields count them) or still unanswered when the
  stream ended (``unanswered``, after a drain of at most ``drain_timeout`` seconds);
* **latency**: the client round trip, from the moment frame ``n`` was sent to its result, and
  the server's own ``latency_ms`` (from the frame's arrival to its result).

Frame numbers are the server's: it numbers the binary messages of a connection from 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.stats import LatencySummary, rate, summarize_ms, summarize_seconds

DEFAULT_FPS = 24.0
DEFAULT_THRESHOLD = 0.7


@dataclass
class StreamLog:
    """What one stream saw: send times by frame number, results, errors (raw, perf_counter s)."""

    measure_from: int  # the first measured frame number
    sent: dict[int, float] = field(default_factory=dict)
    scheduled: dict[int, float] = field(default_factory=dict)
    results: list[tuple[int, float, float, int]] = field(default_factory=list)  # n, at, ms, drop
    errors: Counter[str] = field(default_factory=Counter)
    error_frames: set[int] = field(default_factory=set)
    closed: str | None = None  # why the server closed the stream early, if it did

    def measured_results(self) -> list[tuple[int, float, float, int]]:
        return [r for r in self.results if r[0] >= self.measure_from]

    def measured_sent(self) -> list[int]:
        return [n for n in self.sent if n >= self.measure_from]


@dataclass(frozen=True)
class StreamFigures:
    """One stream's (or all streams') figures over the measured window."""

    sent: int
    processed: int
    dropped: int
    dropped_reported: int
    unanswered: int
    errors: int
    delivered: int  # results received in the window (whichever frames they answer)
    window_s: float  # from the end of the warm-up to the planned end
    result_rate: float  # results per second, each stream first to last result (see the module)
    latency: LatencySummary  # client round trip
    server_latency: LatencySummary  # the server's latency_ms
    send_lag: LatencySummary
    round_trips_ms: np.ndarray = field(repr=False)

    @property
    def fps(self) -> float:
        return self.result_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "processed": self.processed,
            "fps": self.fps,
            "dropped": self.dropped,
            "dropped_reported": self.dropped_reported,
            "unanswered": self.unanswered,
            "errors": self.errors,
            "delivered": self.delivered,
            "window_s": self.window_s,
            "latency": self.latency.to_dict(),
            "server_latency": self.server_latency.to_dict(),
            "send_lag": self.send_lag.to_dict(),
        }


def result_rate(arrivals: Sequence[float], window_s: float) -> float:
    """One stream's results per second from the arrival times of its results in the window:
    from the first to the last (one batch cycle apart or more), else over the whole window."""
    if len(arrivals) >= 2 and max(arrivals) > min(arrivals):
        return (len(arrivals) - 1) / (max(arrivals) - min(arrivals))
    return rate(len(arrivals), window_s)


def figures(logs: Sequence[StreamLog], window_start: float, planned_end: float) -> StreamFigures:
    """The figures of ``logs`` together (one log: one stream's) over the measured window."""
    sent = processed = dropped = reported = unanswered = errors = delivered = 0
    window_s = max(0.0, planned_end - window_start)
    total_rate = 0.0
    trips: list[float] = []
    server: list[float] = []
    lags: list[float] = []
    for log in logs:
        results = log.measured_results()
        answered = {r[0] for r in results}
        measured = log.measured_sent()
        errored = {n for n in log.error_frames if n >= log.measure_from}
        last_answered = max(answered, default=0)
        sent += len(measured)
        processed += len(results)
        errors += len(errored)
        dropped += sum(1 for n in measured if n not in answered and n not in errored)
        unanswered += sum(1 for n in measured if n > last_answered and n not in errored)
        reported += sum(r[3] for r in results)
        arrivals = [r[1] for r in log.results if window_start <= r[1] <= planned_end]
        delivered += len(arrivals)
        total_rate += result_rate(arrivals, window_s)
        for number, received, server_ms, _dropped in results:
            trips.append(received - log.sent[number])
            server.append(server_ms)
        lags += [max(0.0, log.sent[n] - log.scheduled[n]) for n in measured]
    return StreamFigures(
        sent=sent,
        processed=processed,
        dropped=dropped,
        dropped_reported=reported,
        unanswered=unanswered,
        errors=errors,
        delivered=delivered,
        window_s=window_s,
        result_rate=total_rate,
        latency=summarize_seconds(trips),
        server_latency=summarize_ms(server),
        send_lag=summarize_seconds(lags),
        round_trips_ms=np.asarray(trips, dtype=np.float64) * 1000.0,
    )


async def _receive(websocket: ClientConnection, log: StreamLog, done: asyncio.Event) -> None:
    """Record results and errors until the connection closes; ``done`` once the last is in."""
    async for message in websocket:
        received = time.perf_counter()
        if isinstance(message, bytes):
            continue
        data = json.loads(message)
        number = data.get("frame")
        if "error" in data:
            log.errors[str(data["error"])[:120]] += 1
            if isinstance(number, int):
                log.error_frames.add(number)
        else:
            log.results.append(
                (int(number), received, float(data["latency_ms"]), int(data["dropped"]))
            )
        if log.sent and isinstance(number, int) and number >= max(log.sent) and done.is_set():
            return


async def _stream(
    url: str,
    frames: Sequence[bytes],
    *,
    start: float,
    fps: float,
    warmup: float,
    duration: float,
    threshold: float,
    headers: Mapping[str, str],
    drain_timeout: float,
) -> StreamLog:
    # Frame counts come from integer arithmetic on the offsets, not from comparing absolute
    # float times, which can differ by one ulp at the boundary (and count one frame more).
    first_measured = max(0, math.ceil(warmup * fps - 1e-9)) + 1
    total_frames = max(0, math.ceil((warmup + duration) * fps - 1e-9))
    log = StreamLog(first_measured)
    async with connect(url, additional_headers=dict(headers), max_size=None) as websocket:
        await websocket.send(json.dumps({"threshold": threshold}))
        sending = asyncio.Event()
        receiver = asyncio.create_task(_receive(websocket, log, sending))
        index = 0
        while True:
            if index >= total_frames or receiver.done():
                break
            scheduled = start + index / fps
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            number = index + 1
            log.scheduled[number] = scheduled
            log.sent[number] = time.perf_counter()
            await websocket.send(frames[index % len(frames)])
            index += 1
        sending.set()  # every frame is sent: the receiver stops after the last one's reply
        last = max(log.sent, default=0)
        if not any(r[0] >= last for r in log.results) and last not in log.error_frames:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(receiver), drain_timeout)
        if receiver.done() and not receiver.cancelled() and receiver.exception() is not None:
            log.closed = f"{type(receiver.exception()).__name__}: {receiver.exception()}"
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
        if websocket.close_code is not None and websocket.close_code != 1000:
            log.closed = f"closed by the server: {websocket.close_code} {websocket.close_reason}"
    return log


async def run_streams(
    url: str,
    frames: Sequence[bytes],
    *,
    streams: int,
    duration: float,
    warmup: float,
    fps: float = DEFAULT_FPS,
    threshold: float = DEFAULT_THRESHOLD,
    headers: Mapping[str, str] | None = None,
    drain_timeout: float = 10.0,
) -> tuple[list[StreamLog], float, float]:
    """Run ``streams`` concurrent streams; their logs, the window's start and planned end."""
    if streams < 1:
        raise ValueError(f"streams must be at least 1, not {streams}")
    if not frames:
        raise ValueError("no frames to send")
    if not fps > 0 or duration <= 0 or warmup < 0:
        raise ValueError("fps and duration must be positive and warmup non-negative")
    start = time.perf_counter() + 0.2  # time to connect before the first frame is due
    logs = await asyncio.gather(
        *(
            _stream(
                url,
                frames,
                start=start + k / (streams * fps),
                fps=fps,
                warmup=warmup - k / (streams * fps),
                duration=duration,
                threshold=threshold,
                headers=headers or {},
                drain_timeout=drain_timeout,
            )
            for k in range(streams)
        )
    )
    return list(logs), start + warmup, start + warmup + duration


def result_dict(
    logs: Sequence[StreamLog], window_start: float, planned_end: float, *, fps: float
) -> tuple[dict[str, Any], np.ndarray]:
    """The measurement's ``result`` (totals, then ``per_stream``) and all round trips (ms)."""
    total = figures(logs, window_start, planned_end)
    errors_by_kind: Counter[str] = Counter()
    for log in logs:
        errors_by_kind.update(log.errors)
        if log.closed:
            errors_by_kind[log.closed] += 1
    result = {
        "mode": "open",
        "streams": len(logs),
        "fps_per_stream": fps,
        "throughput_rps": total.fps,
        **total.to_dict(),
        "errors": total.errors + sum(1 for log in logs if log.closed),
        "errors_by_kind": dict(errors_by_kind),
        "per_stream": [
            figures([log], window_start, planned_end).to_dict() | {"stream": k + 1}
            for k, log in enumerate(logs)
        ],
    }
    return result, total.round_trips_ms
