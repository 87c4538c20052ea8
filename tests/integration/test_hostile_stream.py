"""Hostile WebSocket clients against a real uvicorn server and a real local tritonserver, with
small limits so the tests run fast (README "Hostile input"):

* frames over ``stream_max_frames_per_s`` (after ``stream_frame_burst``) are dropped, counted in
  the next result's ``dropped`` and reported by an error message at most once a second;
* a client sending over 10x that (burst included) gets an error and a close with 1008;
* more than ``stream_max_connections`` streams: the handshake is refused with HTTP 503 and
  ``Retry-After``; a place freed by a closed stream is reused;
* with ``inference_auth=required``: more than ``stream_max_per_user`` streams of one user are
  refused (503, naming the per-user limit) while other users still connect, and a handshake
  without valid credentials is refused (403) before it takes any place, even on a full worker;
* no valid frame for ``stream_idle_timeout_s``: close 1000 with the reason (settings messages
  and junk frames, 1-byte or with a JPEG signature, do not keep a stream alive);
* text where frames are expected: an error message each, the stream continues;
* a frame over ``max_upload_bytes`` gets an error, the stream continues; a message over
  uvicorn's ``ws_max_size`` (16 MiB), raw or deflate-compressed, is closed with 1009 before it
  is buffered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image

from api.inference.streaming import NOT_AN_IMAGE
from serving.launcher import LocalTriton
from tests.helpers.memory import MIB, peak_rss_growth
from tests.integration.live_server import LiveServer, live_api

RATE = 5.0  # frames per second
BURST = 5
FLOOD = 10 * (RATE + BURST)  # roughly what arrives in the first second before the close
MAX_CONNECTIONS = 2
PER_USER = 2
GUARDED_MAX_CONNECTIONS = 4
IDLE_S = 3.0
UPLOAD_LIMIT = 10 * 1024 * 1024  # Settings.max_upload_bytes' default
UVICORN_WS_MAX_SIZE = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_api(
        triton,
        exported_repository,
        tmp_path_factory.mktemp("api"),
        stream_max_frames_per_s=RATE,
        stream_frame_burst=BURST,
        stream_max_connections=MAX_CONNECTIONS,
        stream_idle_timeout_s=IDLE_S,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def guarded(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Streams need credentials; at most PER_USER per user, GUARDED_MAX_CONNECTIONS in all."""
    with live_api(
        triton,
        exported_repository,
        tmp_path_factory.mktemp("guarded"),
        inference_auth="required",
        stream_max_per_user=PER_USER,
        stream_max_connections=GUARDED_MAX_CONNECTIONS,
    ) as running:
        yield running


def _api_key(server: LiveServer) -> str:
    """A new user's API key."""
    email = f"camera-{os.urandom(4).hex()}@example.com"
    password = "a long enough password"
    base = server.base_url
    assert httpx.post(f"{base}/register", json={"email": email, "password": password}).is_success
    token = httpx.post(f"{base}/token", data={"username": email, "password": password})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    key = httpx.post(f"{base}/users/me/api-keys", json={"name": "camera"}, headers=headers)
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def _jpeg(shade: int = 90, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def _receive_json(socket: Any, timeout: float = 30.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def _connect(server: LiveServer, **options: Any) -> Any:
    """A stream, retrying while the server still counts a stream a previous test just closed."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await websockets.connect(f"{server.ws_url}/object-detection", **options)
        except websockets.InvalidStatus as refused:
            if refused.response.status_code != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _refused(server: LiveServer, **options: Any) -> Any:
    """The HTTP response refusing this handshake (fails if it is accepted)."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        socket = await websockets.connect(f"{server.ws_url}/object-detection", **options)
        await socket.close()
    return refused.value.response


async def _until_closed(socket: Any, timeout: float = 30.0) -> tuple[list[dict[str, Any]], Any]:
    """Every message until the server closes, within ``timeout`` in all (a stream that keeps
    talking fails too); the messages and the close frame received."""
    messages = []
    deadline = time.monotonic() + timeout
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            messages.append(json.loads(await asyncio.wait_for(socket.recv(), left)))
    return messages, closed.value.rcvd


def test_frames_over_the_rate_are_dropped_counted_and_reported(server: LiveServer) -> None:
    async def stream() -> tuple[list[dict[str, Any]], float]:
        socket = await _connect(server)
        async with socket:
            started = time.monotonic()
            for _ in range(20):
                await socket.send(_jpeg())
            sending = time.monotonic() - started
            await asyncio.sleep(1.5)  # the bucket refills (at most BURST tokens)
            await socket.send(_jpeg(200))
            messages = []
            while not messages or messages[-1].get("frame") != 21 or "error" in messages[-1]:
                messages.append(await _receive_json(socket))
            return messages, sending

    messages, sending = asyncio.run(stream())
    errors = [message for message in messages if "error" in message]
    results = [message for message in messages if "error" not in message]
    (notice,) = errors
    admitted = notice["frame"] - 1
    print(
        f"\n20 frames in {sending * 1000:.0f} ms at a {RATE:g}/s limit (burst {BURST}): "
        f"{admitted} admitted, {20 - admitted} dropped; results for {[r['frame'] for r in results]}"
    )
    assert notice["error"] == f"over {RATE:g} frames/s (burst {BURST}): frames are dropped"
    assert BURST <= admitted <= 2 * BURST  # the burst, plus what refilled while they arrived
    assert all(result["frame"] <= admitted for result in results[:-1])
    assert results[-1]["frame"] == 21
    assert sum(result["dropped"] for result in results) + len(results) == 21


def test_a_flooding_client_is_closed_with_1008_and_others_are_unaffected(
    server: LiveServer,
) -> None:
    frame = _jpeg()

    async def flood() -> tuple[int, list[dict[str, Any]], Any]:
        socket = await _connect(server)
        sent = 0
        try:
            for _ in range(5000):
                await socket.send(frame)
                sent += 1
        except websockets.ConnectionClosed:
            pass
        messages, close = await _until_closed(socket)
        return sent, messages, close

    async def polite() -> dict[str, Any]:
        socket = await _connect(server)
        async with socket:
            await socket.send(_jpeg(30))
            return await _receive_json(socket)

    sent, messages, close = asyncio.run(flood())
    print(
        f"\nflood: {sent} frames sent as fast as possible; the server closed at frame "
        f"{messages[-1]['frame']} with {close.code} ({close.reason!r})"
    )
    assert close.code == 1008
    assert close.reason == f"flood: over {10 * RATE:g} messages/s"
    assert messages[-1]["error"] == f"over {10 * RATE:g} messages/s: closing"
    assert messages[-1]["frame"] <= FLOOD + 1
    assert asyncio.run(polite())["frame"] == 1


def test_handshakes_over_the_connection_limit_get_503_and_freed_places_are_reused(
    server: LiveServer,
) -> None:
    async def scenario() -> tuple[Any, dict[str, Any]]:
        first = await _connect(server)
        second = await _connect(server)
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{server.ws_url}/ws/detect")
        await second.send(_jpeg())
        assert (await _receive_json(second))["frame"] == 1, "the admitted streams work"
        await first.close()
        third = await _connect(server)  # the freed place
        async with third:
            await third.send(_jpeg())
            result = await _receive_json(third)
        await second.close()
        return refused.value.response, result

    response, result = asyncio.run(scenario())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert json.loads(response.body) == {
        "detail": f"too many detection streams ({MAX_CONNECTIONS} per worker); retry later"
    }
    assert result["frame"] == 1


def test_an_idle_stream_is_closed_with_1000_and_the_reason(server: LiveServer) -> None:
    async def scenario() -> tuple[float, list[dict[str, Any]], Any]:
        socket = await _connect(server)
        await socket.send(_jpeg())
        last_frame = time.monotonic()
        await _receive_json(socket)
        await asyncio.sleep(IDLE_S / 2)
        await socket.send(json.dumps({"threshold": 0.5}))  # not a frame: the clock runs on
        messages, close = await _until_closed(socket, timeout=IDLE_S * 3)
        return time.monotonic() - last_frame, messages, close

    idle, messages, close = asyncio.run(scenario())
    print(f"\nidle stream closed {idle:.2f} s after its last frame: {close.code} {close.reason!r}")
    assert close.code == 1000
    assert close.reason == f"idle: no frame for {IDLE_S:g} s"
    assert IDLE_S - 0.2 <= idle < IDLE_S + 2.0
    assert messages == []


def test_junk_frames_do_not_keep_a_stream_alive_past_the_idle_timeout(server: LiveServer) -> None:
    junk = [b"x", b"\xff\xd8\xff" + bytes(20)]  # one byte; a JPEG signature with no image

    async def scenario() -> tuple[float, int, list[dict[str, Any]], Any]:
        socket = await _connect(server)
        await socket.send(_jpeg())
        assert "error" not in await _receive_json(socket)
        last_valid = time.monotonic()
        sent = 0

        async def send_junk() -> None:  # 4 a second: under the rate limit, no flood
            nonlocal sent
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    await socket.send(junk[sent % 2])
                    sent += 1
                    await asyncio.sleep(0.25)

        sender = asyncio.create_task(send_junk())
        try:
            messages, close = await _until_closed(socket, timeout=IDLE_S * 3)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return time.monotonic() - last_valid, sent, messages, close

    idle, sent, messages, close = asyncio.run(scenario())
    print(
        f"\n{sent} junk frames at 4/s: closed {idle:.2f} s after the last valid frame "
        f"({close.reason!r})"
    )
    assert close.code == 1000
    assert close.reason == f"idle: no frame for {IDLE_S:g} s"
    assert IDLE_S - 0.2 <= idle < IDLE_S + 1.5
    assert sent >= 4 * (IDLE_S - 1)
    errors = [message["error"] for message in messages]
    assert len(errors) >= sent - 2 and NOT_AN_IMAGE in errors, "each junk frame got an error"


def test_a_user_at_the_per_user_cap_is_refused_one_more_stream_while_another_user_connects(
    guarded: LiveServer,
) -> None:
    greedy, polite = _api_key(guarded), _api_key(guarded)

    async def scenario() -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
        held = [await _connect(guarded, additional_headers={"X-API-Key": greedy})]
        held.append(await _connect(guarded, additional_headers={"X-API-Key": greedy}))
        refused = await _refused(guarded, additional_headers={"X-API-Key": greedy})
        other = await _connect(guarded, additional_headers={"X-API-Key": polite})
        async with other:
            await other.send(_jpeg())
            others_result = await _receive_json(other)
        results = []
        for socket in held:
            async with socket:
                await socket.send(_jpeg(30))
                results.append(await _receive_json(socket))
        return refused, others_result, results

    refused, others_result, held_results = asyncio.run(scenario())
    print(f"\none stream over the per-user cap: {refused.status_code} {refused.body!r}")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert json.loads(refused.body) == {
        "detail": f"too many detection streams for this user ({PER_USER} per user per worker); "
        "close one or retry later"
    }
    assert others_result["frame"] == 1 and "error" not in others_result
    assert all(result["frame"] == 1 and "error" not in result for result in held_results)


def test_credentials_are_checked_before_a_stream_takes_a_place(guarded: LiveServer) -> None:
    keys = [_api_key(guarded) for _ in range(GUARDED_MAX_CONNECTIONS // PER_USER + 1)]

    async def scenario() -> tuple[list[Any], Any]:
        held = [
            await _connect(guarded, additional_headers={"X-API-Key": key})
            for key in keys[:-1]
            for _ in range(PER_USER)
        ]  # the worker is full
        try:
            anonymous = [
                await _refused(guarded),
                await _refused(guarded, additional_headers={"X-API-Key": "not-a-key"}),
            ]
            full = await _refused(guarded, additional_headers={"X-API-Key": keys[-1]})
        finally:
            for socket in held:
                await socket.close()
        return anonymous, full

    anonymous, full = asyncio.run(scenario())
    assert [response.status_code for response in anonymous] == [403, 403]
    assert full.status_code == 503
    assert json.loads(full.body) == {
        "detail": f"too many detection streams ({GUARDED_MAX_CONNECTIONS} per worker); retry later"
    }


def test_text_where_frames_are_expected_gets_errors_and_the_stream_continues(
    server: LiveServer,
) -> None:
    texts = {
        "plain text": "hello, this is not JSON",
        "a frame as base64 text": base64.b64encode(_jpeg()).decode(),
        "a JSON array": json.dumps([1, 2, 3]),
        "100 kB of text": "x" * 100_000,
        "deep nesting": "[" * 500 + "]" * 500,
    }

    async def stream() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        socket = await _connect(server)
        async with socket:
            replies = {}
            for name, text in texts.items():
                await socket.send(text)
                replies[name] = await _receive_json(socket)
            await socket.send(_jpeg())
            return replies, await _receive_json(socket)

    replies, result = asyncio.run(stream())
    for name, reply in replies.items():
        assert reply["frame"] is None, name
        assert reply["error"].startswith("bad settings message (frames are binary messages"), name
    assert "over 1024 characters" in replies["100 kB of text"]["error"]
    assert result["frame"] == 1 and "error" not in result


def test_oversized_frames_get_an_error_and_giant_messages_are_closed_with_1009_unbuffered(
    server: LiveServer,
) -> None:
    pid = server.process.pid

    async def over_the_upload_limit() -> tuple[dict[str, Any], dict[str, Any], float]:
        socket = await _connect(server, compression=None, max_size=None)
        async with socket:
            with peak_rss_growth(pid) as growth:
                await socket.send(os.urandom(UPLOAD_LIMIT + MIB))  # 11 MiB: under 16 MiB
                refused = await _receive_json(socket)
            await socket.send(_jpeg())
            return refused, await _receive_json(socket), growth.mib

    async def giant(data: bytes, compression: str | None) -> tuple[Any, float]:
        socket = await _connect(server, compression=compression)
        with peak_rss_growth(pid) as growth:
            with contextlib.suppress(websockets.ConnectionClosed):
                await socket.send(data)
            _, close = await _until_closed(socket)
        return close, growth.mib

    refused, next_frame, buffered_mib = asyncio.run(over_the_upload_limit())
    assert refused == {"error": f"frame over {UPLOAD_LIMIT} bytes", "frame": 1}
    assert next_frame["frame"] == 2 and next_frame["dropped"] == 1

    raw_close, raw_mib = asyncio.run(giant(os.urandom(64 * MIB), None))
    zeros = bytes(256 * MIB)
    deflate_close, deflate_mib = asyncio.run(giant(zeros, "deflate"))
    del zeros
    print(
        f"\n11 MiB frame (over the upload limit, under ws_max_size): error, server peak RSS "
        f"+{buffered_mib:.1f} MiB; 64 MiB raw frame: close {raw_close.code}, "
        f"+{raw_mib:.1f} MiB; 256 MiB of zeros deflated: close {deflate_close.code}, "
        f"+{deflate_mib:.1f} MiB"
    )
    for close in (raw_close, deflate_close):
        assert close.code == 1009  # message too big
    assert raw_mib < 8, "the 64 MiB frame was not buffered"
    assert deflate_mib < UVICORN_WS_MAX_SIZE / MIB + 8, "decompression stopped at the limit"

    async def still_serving() -> dict[str, Any]:
        socket = await _connect(server)
        async with socket:
            await socket.send(_jpeg())
            return await _receive_json(socket)

    assert asyncio.run(still_serving())["frame"] == 1
