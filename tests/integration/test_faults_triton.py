"""Triton failing under load, against the API in its own uvicorn process and a private
tritonserver (the session's is never killed).

* Killed under REST and WebSocket load: every request is answered within its deadline (200, 503
  with Retry-After, or 504; never a 500, never a hang), ``/health/ready`` turns false, and once
  Triton is back the API serves again within 5 s without a restart.
* Restarted with a new model version: batches ride through the restart, so no request fails, and
  once Triton is back no response, cached or not, comes from the old version.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx

from serving.launcher import LocalTriton, TritonPorts
from tests.integration.api_client import app_settings
from tests.integration.faults import (
    Record,
    StreamRecord,
    cycling_texts,
    numbered_texts,
    post_texts,
    stream_frames,
)
from tests.integration.live_server import LiveServer, live_server

RECOVERY_BAR_S = 5.0
DEADLINE_S = 3.0
CLIENTS = 6


def _private_triton(repository: Path, tmp_path: Path) -> LocalTriton:
    return LocalTriton(repository, tmp_path / "triton", ports=TritonPorts.free(), config_name="cpu")


async def _poll_ready(
    server: LiveServer, stop: asyncio.Event, seen: list[tuple[float, int]]
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        while not stop.is_set():
            reply = await client.get("/health/ready")
            seen.append((time.monotonic(), reply.status_code))
            await asyncio.sleep(0.2)


def test_triton_killed_under_load_every_request_is_answered_and_the_api_recovers(
    exported_repository: Path, tmp_path: Path
) -> None:
    triton = _private_triton(exported_repository, tmp_path)
    settings = app_settings(
        exported_repository,
        triton_url=triton.grpc_url,
        request_timeout_s=DEADLINE_S,
        triton_ride_through_s=1.0,
    )
    record, stream, readiness = Record(), StreamRecord(), []
    with triton, live_server(settings, tmp_path) as server:

        async def scenario() -> tuple[float, float]:
            stop = asyncio.Event()
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                load = [
                    asyncio.create_task(
                        post_texts(client, record, numbered_texts(str(i)), stop, DEADLINE_S + 5)
                    )
                    for i in range(CLIENTS)
                ]
                load.append(asyncio.create_task(stream_frames(server.ws_url, stream, stop, 0.1)))
                load.append(asyncio.create_task(_poll_ready(server, stop, readiness)))
                await asyncio.sleep(2.0)
                killed = time.monotonic()
                await asyncio.to_thread(triton.kill)
                await asyncio.sleep(4.0)  # longer than the ride-through: requests must fail
                restarting = time.monotonic()
                await asyncio.to_thread(triton.start)  # same ports; returns once Triton is ready
                back = time.monotonic()
                await asyncio.sleep(RECOVERY_BAR_S + 2.0)
                stop.set()
                await asyncio.gather(*load)
            return killed, restarting, back

        killed, restarting, back = asyncio.run(scenario())
        log = server.log()

    statuses = record.statuses()
    slowest = max(answer.seconds for answer in record.answers)
    last_failure = record.last_failure_end()
    recovered_in = 0.0 if last_failure is None else max(0.0, last_failure - back)
    # Down for sure: from the end of the ride-through until the restart began (Triton may answer
    # a little before start() has seen it ready).
    during = record.started_between(killed + 1.5, restarting)
    ready_during = {status for at, status in readiness if killed + 1.5 <= at < restarting}
    ready_after = [status for at, status in readiness if at >= back + RECOVERY_BAR_S]
    results_after = [at for at in stream.results if at >= back + RECOVERY_BAR_S]
    print(
        f"\n{len(record.answers)} requests: {statuses}; slowest {slowest:.2f} s "
        f"(deadline {DEADLINE_S} s); Triton down {back - killed:.1f} s; API serving again "
        f"{recovered_in:.2f} s after Triton was ready; stream: {len(stream.results)} results, "
        f"{len(stream.errors)} error messages, close codes {stream.close_codes}, longest "
        f"silence {stream.longest_silence:.2f} s"
    )
    assert set(statuses) <= {200, 503, 504}, [a for a in record.answers if a.status is None][:3]
    assert "Traceback" not in log, log[-3000:]
    assert slowest <= DEADLINE_S + 1.0, "an answer took longer than its deadline"
    assert statuses.get(503, 0) + statuses.get(504, 0) > 0, "the outage was not noticed"
    assert all(a.status != 200 for a in during), "no request can succeed while Triton is down"
    assert all(a.retry_after for a in record.answers if a.status == 503)
    assert 503 in ready_during and ready_after and set(ready_after) == {200}
    assert recovered_in <= RECOVERY_BAR_S
    # The stream: told about the outage (an error message and 1011), never silent past the
    # deadline, and a reconnecting client gets results again once Triton is back.
    assert stream.close_codes and set(stream.close_codes) == {1011}
    assert any("unavailable" in error or "unreachable" in error for error in stream.errors)
    assert stream.longest_silence <= DEADLINE_S + 1.5
    assert results_after, "the stream did not resume after Triton came back"


def test_triton_restarted_with_a_new_version_fails_nothing_and_the_cache_is_not_stale(
    exported_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "model_repository"
    shutil.copytree(exported_repository, repository)
    triton = _private_triton(repository, tmp_path)
    refresh = 0.5
    settings = app_settings(
        repository,
        triton_url=triton.grpc_url,
        cache_enabled=True,
        model_refresh_interval_s=refresh,
        request_timeout_s=60.0,
        triton_ride_through_s=50.0,  # a generous bound for a loaded CI machine; see the README
    )
    hits, misses = Record(), Record()
    with triton, live_server(settings, tmp_path) as server:

        async def scenario() -> tuple[float, float, float]:
            stop = asyncio.Event()
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                load = [
                    asyncio.create_task(post_texts(client, hits, cycling_texts(8), stop, 90))
                    for _ in range(3)
                ]
                load += [
                    asyncio.create_task(
                        post_texts(client, misses, numbered_texts(str(i)), stop, 90)
                    )
                    for i in range(2)
                ]
                await asyncio.sleep(2.0)
                stopped = time.monotonic()
                await asyncio.to_thread(triton.stop)  # graceful, like a rollout
                shutil.copytree(repository / "newsgroups" / "1", repository / "newsgroups" / "2")
                restarting = time.monotonic()
                await asyncio.to_thread(triton.start)
                back = time.monotonic()
                await asyncio.sleep(3.0)
                stop.set()
                await asyncio.gather(*load)
            return stopped, restarting, back

        stopped, restarting, back = asyncio.run(scenario())

    answers = hits.answers + misses.answers
    statuses = {**hits.statuses()}
    for status, count in misses.statuses().items():
        statuses[status] = statuses.get(status, 0) + count
    settled = back + refresh + 0.5
    after = [a for a in answers if a.started >= settled]
    old_after = [a for a in after if a.version != "2"]
    slowest = max(a.seconds for a in answers)
    print(
        f"\n{len(answers)} requests: {statuses}; Triton stopped and back in "
        f"{back - stopped:.1f} s (start alone {back - restarting:.1f} s); slowest answer "
        f"{slowest:.2f} s; {len(after)} answers after the restart settled, "
        f"{len(old_after)} from version 1"
    )
    assert statuses == {200: len(answers)}, "a request failed across the restart"
    assert len(after) > 20
    assert not old_after, old_after[:3]
    assert any(a.cache == "hit" for a in after), "the cache works again for version 2"
    assert any(a.version == "1" for a in answers if a.ended < stopped)
