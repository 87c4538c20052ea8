"""benchmarks.ws_streams against a fake streaming server that keeps only the newest frame."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve

from benchmarks import loadgen
from benchmarks.frames import FRAME_SIZE, camera_frame, camera_frames
from benchmarks.payloads import FilePart
from benchmarks.ws_streams import StreamLog, figures, result_dict, result_rate, run_streams

FRAMES = [b"frame-a" * 100, b"frame-b" * 100]
Handler = Callable[[ServerConnection], Awaitable[None]]


def newest_frame_server(
    delay: float, errors: bool = False, settings: list[object] | None = None
) -> Handler:
    """A handler like api/inference/streaming.py: one waiting frame per connection, results as
    JSON."""

    async def handler(websocket: ServerConnection) -> None:
        waiting: tuple[int, float] | None = None
        skipped = 0
        ready = asyncio.Event()

        async def detect() -> None:
            nonlocal waiting, skipped
            while True:
                await ready.wait()
                ready.clear()
                if waiting is None:
                    continue
                (number, arrived), waiting = waiting, None
                dropped, skipped = skipped, 0
                await asyncio.sleep(delay)
                if errors:
                    await websocket.send(json.dumps({"error": "model failed", "frame": number}))
                    continue
                latency = (time.monotonic() - arrived) * 1000.0
                reply = {"frame": number, "objects": [], "image_size": [640, 480]}
                reply |= {"latency_ms": latency, "dropped": dropped}
                await websocket.send(json.dumps(reply))

        task = asyncio.create_task(detect())
        received = 0
        try:
            async for message in websocket:
                if isinstance(message, str):
                    if settings is not None:
                        settings.append(json.loads(message))
                    continue
                received += 1
                if waiting is not None:
                    skipped += 1
                waiting = (received, time.monotonic())
                ready.set()
        finally:
            task.cancel()

    return handler


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/object-detection"


def run_against(handler: Handler, **options: object) -> tuple[list[StreamLog], float, float]:
    async def main() -> tuple[list[StreamLog], float, float]:
        async with fake_server(handler) as url:
            return await run_streams(url, FRAMES, **options)  # type: ignore[arg-type]

    return loadgen.run(main())


def test_a_fast_server_answers_every_frame_at_the_offered_rate() -> None:
    settings: list[object] = []
    logs, start, end = run_against(
        newest_frame_server(0.0, settings=settings), streams=1, fps=50.0, duration=0.6, warmup=0.2
    )
    result, trips = result_dict(logs, start, end, fps=50.0)
    assert settings == [{"threshold": 0.7}]
    assert result["sent"] == 30 and result["processed"] == 30
    assert result["dropped"] == 0 and result["errors"] == 0
    assert result["throughput_rps"] == pytest.approx(50.0, rel=0.15)
    assert trips.size == 30 and result["per_stream"][0]["stream"] == 1


def test_a_slow_server_drops_frames_and_every_measured_frame_is_accounted_for() -> None:
    logs, start, end = run_against(
        newest_frame_server(0.05), streams=2, fps=40.0, duration=1.0, warmup=0.3
    )
    result, _trips = result_dict(logs, start, end, fps=40.0)
    assert result["streams"] == 2 and len(result["per_stream"]) == 2
    for stream in result["per_stream"]:
        assert stream["sent"] == 40
        assert stream["processed"] + stream["dropped"] == stream["sent"]
        assert 12.0 <= stream["fps"] <= 21.0  # one frame per 50 ms at most
        assert stream["dropped"] > 0 and stream["unanswered"] == 0
    assert result["processed"] == sum(s["processed"] for s in result["per_stream"])
    assert result["latency"]["p50_ms"] >= 50.0
    assert result["server_latency"]["p50_ms"] <= result["latency"]["p50_ms"]


def test_error_replies_are_counted_not_processed() -> None:
    logs, start, end = run_against(
        newest_frame_server(0.0, errors=True), streams=1, fps=50.0, duration=0.3, warmup=0.0
    )
    result, trips = result_dict(logs, start, end, fps=50.0)
    assert result["processed"] == 0 and trips.size == 0
    assert result["errors"] == result["sent"] == 15
    assert result["errors_by_kind"] == {"model failed": 15}


def test_figures_count_drops_and_unanswered_frames_exactly() -> None:
    log = StreamLog(measure_from=3)
    for number in range(1, 11):
        log.scheduled[number] = number * 0.1
        log.sent[number] = number * 0.1 + 0.001
    log.results = [(1, 0.3, 150.0, 0), (3, 0.5, 150.0, 1), (5, 0.8, 200.0, 1), (9, 1.2, 250.0, 3)]
    log.error_frames = {6}
    total = figures([log], window_start=0.3, planned_end=1.0)
    assert (total.sent, total.processed, total.errors) == (8, 3, 1)
    assert total.dropped == 4  # 4, 7, 8 skipped by the server; 10 never answered
    assert total.unanswered == 1 and total.dropped_reported == 5
    assert total.window_s == pytest.approx(0.7)  # end of the warm-up to the planned end
    # Results received in the window, whichever frame they answer: frame 1's (at 0.3), 3's
    # and 5's; frame 9's arrives after the planned end. The rate runs from the first of them
    # to the last: two more results in 0.5 s.
    assert total.delivered == 3
    assert total.fps == pytest.approx(2 / 0.5)
    assert total.latency.count == 3 and total.latency.max_ms == pytest.approx(299.0)
    assert total.server_latency.p50_ms == pytest.approx(200.0)


def _cycling_log(period: float, offset: float) -> StreamLog:
    """A stream whose results arrive every ``period`` seconds from ``offset`` (one per batch)."""
    log = StreamLog(measure_from=1)
    for k in range(40):
        log.sent[k + 1] = log.scheduled[k + 1] = offset + k * period - 0.5
        log.results.append((k + 1, offset + k * period, 500.0, 0))
    return log


def test_a_streams_rate_does_not_depend_on_where_the_window_falls() -> None:
    # Results every 1.3 s; a 10 s window holds 7 or 8 of them depending on the phase, so a
    # count over the window reads 0.70 or 0.80 per second. First to last result: 1/1.3.
    rates, counts = set(), set()
    for offset in (0.0, 0.4, 0.9, 1.25):
        total = figures([_cycling_log(1.3, offset)], window_start=2.0, planned_end=12.0)
        rates.add(round(total.fps, 9))
        counts.add(total.delivered)
    assert rates == {round(1 / 1.3, 9)}
    assert counts == {7, 8}


def test_streams_rates_add_up_and_a_stream_with_one_result_counts_over_the_window() -> None:
    fast, slow = _cycling_log(0.5, 0.0), _cycling_log(1.0, 0.2)
    total = figures([fast, slow], window_start=1.0, planned_end=5.0)
    assert total.fps == pytest.approx(2.0 + 1.0)
    assert result_rate([3.0], window_s=4.0) == pytest.approx(0.25)
    assert result_rate([], window_s=4.0) == 0.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="streams"):
        loadgen.run(run_streams("ws://127.0.0.1:1", FRAMES, streams=0, duration=1, warmup=0))
    with pytest.raises(ValueError, match="frames"):
        loadgen.run(run_streams("ws://127.0.0.1:1", [], streams=1, duration=1, warmup=0))


def test_camera_frames_are_640_by_480_jpegs() -> None:
    import io

    from PIL import Image

    tall = io.BytesIO()
    Image.new("RGB", (300, 900), (200, 30, 30)).save(tall, format="PNG")
    frame = camera_frame(tall.getvalue())
    with Image.open(io.BytesIO(frame)) as image:
        assert image.format == "JPEG" and image.size == FRAME_SIZE
    assert len(camera_frames([FilePart("a.png", tall.getvalue())])) == 1
    with pytest.raises(ValueError):
        camera_frames([])
