"""The detection WebSocket against a real uvicorn server and a real local tritonserver."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from serving.launcher import LocalTriton, TritonPorts
from tests.integration.api_client import app_settings
from tests.integration.faults import jpeg
from tests.integration.live_server import LiveServer, live_server

BURST = 50


async def _receive_json(socket: Any, timeout: float = 30.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


def test_stream_results_equal_the_rest_endpoint(server: LiveServer, photos: list[Path]) -> None:
    photo = photos[0].read_bytes()
    rest = httpx.post(
        f"{server.base_url}/object-detection",
        params={"threshold": 0.0},
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        timeout=60,
    ).json()

    async def stream() -> dict[str, Any]:
        async with websockets.connect(f"{server.ws_url}/object-detection") as socket:
            await socket.send(json.dumps({"threshold": 0.0}))
            await socket.send(photo)
            return await _receive_json(socket)

    result = asyncio.run(stream())
    assert result["frame"] == 1
    assert result["dropped"] == 0
    assert result["latency_ms"] > 0
    assert result["image_size"] == rest["image_size"]
    assert len(result["objects"]) == len(rest["objects"]) > 0
    for streamed, posted in zip(result["objects"], rest["objects"], strict=True):
        assert streamed["label"] == posted["label"]
        assert streamed["box"] == pytest.approx(posted["box"], abs=1e-6)
        assert streamed["score"] == pytest.approx(posted["score"], abs=1e-9)


def test_frames_travel_uncompressed_even_when_the_client_offers_deflate(
    server: LiveServer, photos: list[Path]
) -> None:
    """Browsers offer permessage-deflate; the server declines it (JPEG frames don't shrink, and
    compressing each one costs the client and the server CPU)."""

    async def stream() -> tuple[str | None, dict[str, Any]]:
        async with websockets.connect(
            f"{server.ws_url}/object-detection", compression="deflate"
        ) as socket:
            extensions = socket.response.headers.get("Sec-WebSocket-Extensions")
            await socket.send(photos[0].read_bytes())
            return extensions, await _receive_json(socket)

    extensions, result = asyncio.run(stream())
    assert extensions is None, f"the server negotiated {extensions!r}"
    assert result["frame"] == 1 and "objects" in result


def test_a_burst_keeps_only_recent_frames_and_accounts_for_every_frame(
    server: LiveServer, photos: list[Path]
) -> None:
    frames = [photos[i % len(photos)].read_bytes() for i in range(BURST)]

    async def stream() -> list[dict[str, Any]]:
        results = []
        async with websockets.connect(f"{server.ws_url}/ws/detect", max_size=None) as socket:
            for frame in frames:
                await socket.send(frame)
            while True:
                result = await _receive_json(socket)
                results.append(result)
                if result["frame"] == BURST:
                    return results

    results = asyncio.run(stream())
    numbers = [result["frame"] for result in results]
    print(f"\n{BURST} frames sent at once → {len(results)} results for frames {numbers}")
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert len(results) <= BURST // 2, "far fewer results than frames: the newest frame wins"
    assert numbers[-1] == BURST, "the last frame sent is always processed"
    assert sum(result["dropped"] for result in results) + len(results) == BURST
    for previous, current in itertools.pairwise(results):
        assert current["dropped"] == current["frame"] - previous["frame"] - 1


def test_bad_frames_and_settings_get_errors_and_the_stream_continues(server: LiveServer) -> None:
    async def stream() -> list[dict[str, Any]]:
        async with websockets.connect(f"{server.ws_url}/object-detection") as socket:
            replies = []
            await socket.send(b"definitely not an image")
            replies.append(await _receive_json(socket))
            await socket.send(json.dumps({"threshold": 7}))
            replies.append(await _receive_json(socket))
            await socket.send("not json")
            replies.append(await _receive_json(socket))
            await socket.send(json.dumps({"threshold": 0.0}))
            await socket.send(jpeg((10, 200, 10)))
            replies.append(await _receive_json(socket))
            return replies

    garbage, bad_threshold, not_json, good = asyncio.run(stream())
    assert garbage["frame"] == 1 and "not a recognised image" in garbage["error"]
    assert bad_threshold["frame"] is None and "between 0 and 1" in bad_threshold["error"]
    assert not_json["frame"] is None and "bad settings message" in not_json["error"]
    assert good["frame"] == 2 and len(good["objects"]) > 0 and "error" not in good


def test_a_frame_over_the_size_limit_is_refused_and_counted_as_dropped(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> None:
    settings = app_settings(exported_repository, triton_url=triton.grpc_url, max_upload_bytes=2000)

    async def stream(server: LiveServer) -> list[dict[str, Any]]:
        async with websockets.connect(f"{server.ws_url}/object-detection") as socket:
            await socket.send(b"x" * 5000)
            first = await _receive_json(socket)
            await socket.send(jpeg((0, 0, 0), size=(16, 16)))
            return [first, await _receive_json(socket)]

    with live_server(settings, tmp_path) as server:
        too_big, next_frame = asyncio.run(stream(server))
    assert too_big == {"error": "frame over 2000 bytes", "frame": 1}
    assert next_frame["frame"] == 2 and next_frame["dropped"] == 1


def test_server_stop_closes_streams_with_1001(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> None:
    settings = app_settings(exported_repository, triton_url=triton.grpc_url)
    with live_server(settings, tmp_path) as server:

        async def stream() -> int | None:
            async with websockets.connect(f"{server.ws_url}/object-detection") as socket:
                await socket.send(jpeg((0, 0, 255)))
                await _receive_json(socket)
                os.kill(server.process.pid, signal.SIGTERM)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 30)
                return closed.value.rcvd.code if closed.value.rcvd else None

        code = asyncio.run(stream())
        # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean stop.
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
    assert code == 1001


def test_triton_down_sends_an_error_and_closes_with_1011(
    exported_repository: Path, tmp_path: Path
) -> None:
    own_triton = LocalTriton(exported_repository, tmp_path / "triton", ports=TritonPorts.free())
    own_triton.start()
    settings = app_settings(exported_repository, triton_url=own_triton.grpc_url)
    try:
        with live_server(settings, tmp_path) as server:

            async def stream() -> tuple[dict[str, Any], int | None]:
                async with websockets.connect(f"{server.ws_url}/object-detection") as socket:
                    await socket.send(jpeg((50, 50, 50)))
                    await _receive_json(socket)
                    await asyncio.to_thread(own_triton.kill)
                    await socket.send(jpeg((60, 60, 60)))
                    error = await _receive_json(socket)
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(socket.recv(), 30)
                    return error, closed.value.rcvd.code if closed.value.rcvd else None

            error, code = asyncio.run(stream())
    finally:
        own_triton.stop()
    assert error["frame"] == 2 and "unreachable" in error["error"]
    assert code == 1011


@pytest.fixture(scope="module")
def guarded_server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = app_settings(
        exported_repository, triton_url=triton.grpc_url, inference_auth="required"
    )
    with live_server(settings, tmp_path_factory.mktemp("guarded")) as running:
        yield running


def _credentials(server: LiveServer) -> tuple[str, str, httpx.Cookies]:
    """A new user's access token, API key and login cookie."""
    email = f"streamer-{os.urandom(4).hex()}@example.com"
    password = "a long enough password"
    base = server.base_url
    assert httpx.post(f"{base}/register", json={"email": email, "password": password}).is_success
    form = {"username": email, "password": password}
    token = httpx.post(f"{base}/token", data=form).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    key = httpx.post(f"{base}/users/me/api-keys", json={"name": "ws"}, headers=headers).json()
    login = httpx.post(f"{base}/login", data={"email": email, "password": password})
    assert login.is_success
    return token, key["key"], login.cookies


async def _first_result(url: str, **connect: Any) -> dict[str, Any]:
    async with websockets.connect(url, **connect) as socket:
        await socket.send(jpeg((1, 2, 3)))
        return await _receive_json(socket)


def test_handshake_needs_credentials_when_inference_is_closed(guarded_server: LiveServer) -> None:
    token, key, cookies = _credentials(guarded_server)
    url = f"{guarded_server.ws_url}/object-detection"
    cookie_header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    same_origin = {"Origin": guarded_server.base_url, "Cookie": cookie_header}

    assert asyncio.run(_first_result(f"{url}?token={token}"))["frame"] == 1
    assert asyncio.run(_first_result(url, additional_headers={"X-API-Key": key}))["frame"] == 1
    assert asyncio.run(_first_result(url, additional_headers=same_origin))["frame"] == 1

    refused = [
        {},
        {"url": f"{url}?token=not-a-token"},
        {"additional_headers": {"X-API-Key": "nope"}},
        {"additional_headers": {"Origin": "http://evil.example", "Cookie": cookie_header}},
    ]
    for attempt in refused:
        target = attempt.pop("url", url)
        with pytest.raises(websockets.InvalidStatus) as rejected:
            asyncio.run(_first_result(target, **attempt))
        # A close before accept() is the handshake's refusal: HTTP 403 on the wire.
        assert rejected.value.response.status_code == 403


def test_refusal_is_close_code_1008_at_the_asgi_level(
    triton: LocalTriton, exported_repository: Path
) -> None:
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from api.main import create_app

    settings = app_settings(
        exported_repository, triton_url=triton.grpc_url, inference_auth="required"
    )
    with (
        TestClient(create_app(settings)) as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/object-detection") as socket,
    ):
        socket.receive_json()
    assert closed.value.code == 1008
    assert closed.value.reason == "not authenticated"
