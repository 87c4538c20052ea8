"""Logs and stream metrics of a real uvicorn process: JSON lines for our loggers and uvicorn's,
the request id on the lines of its request, and no credential ever written (bearer token, API
key, password, the Redis URL's password, WebSocket query-string tokens)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image

from serving.launcher import LocalTriton, TritonPorts
from tests.integration.api_client import app_settings
from tests.integration.live_server import LiveServer, live_server
from tests.integration.prometheus_text import value

PASSWORD = "correct horse battery staple"
REDIS_PASSWORD = "hunter2-redis-secret"
REQUEST_ID = "trace-logs-0001"


@pytest.fixture(scope="module")
def server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    # Nothing listens on this Redis port: every request logs (rate-limited) from inside itself.
    redis_port = TritonPorts.free().http
    settings = app_settings(
        exported_repository,
        triton_url=triton.grpc_url,
        inference_auth="required",
        log_format="json",
        log_level="debug",
        access_log=True,
        cache_enabled=True,
        redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0",
    )
    with live_server(settings, tmp_path_factory.mktemp("api")) as running:
        yield running


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _credentials(base: str) -> tuple[str, str]:
    """A new user's bearer token and API key, through the real endpoints."""
    email = "logs@example.com"
    assert httpx.post(f"{base}/register", json={"email": email, "password": PASSWORD}).is_success
    token = httpx.post(f"{base}/token", data={"username": email, "password": PASSWORD}).json()[
        "access_token"
    ]
    bearer = {"Authorization": f"Bearer {token}"}
    key = httpx.post(f"{base}/users/me/api-keys", json={"name": "logs"}, headers=bearer).json()
    return token, key["key"]


async def _stream_one_frame(url: str) -> dict[str, Any]:
    async with websockets.connect(url) as socket:
        await socket.send(_jpeg())
        return json.loads(await asyncio.wait_for(socket.recv(), 30))


def _metrics_when_streams_closed(base: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"{base}/metrics").text
        if value(text, "tritongate_websocket_connections_open") == 0:
            return text
        assert time.monotonic() < deadline, "streams still counted as open"
        time.sleep(0.1)


def test_logs_are_json_carry_request_ids_and_no_secrets(server: LiveServer) -> None:
    base = server.base_url
    token, key = _credentials(base)
    text = {"text": "computer cpu memory ram"}
    traced = httpx.post(
        f"{base}/prediction",
        json=text,
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": REQUEST_ID},
    )
    assert traced.status_code == 200 and traced.headers["x-request-id"] == REQUEST_ID
    assert traced.headers["x-cache"] == "miss", "Redis is unreachable: served without it"
    by_key = httpx.post(f"{base}/prediction", json=text, headers={"X-API-Key": key})
    assert by_key.status_code == 200
    generated = by_key.headers["x-request-id"]
    assert generated and generated != REQUEST_ID

    results = [
        asyncio.run(_stream_one_frame(f"{server.ws_url}/object-detection?token={token}")),
        asyncio.run(_stream_one_frame(f"{server.ws_url}/ws/detect?api_key={key}")),
    ]
    assert all(result["frame"] == 1 for result in results), results
    metrics = _metrics_when_streams_closed(base)
    assert value(metrics, "tritongate_websocket_connections_total") == 2
    assert value(metrics, "tritongate_websocket_frames_received_total") == 2
    assert value(metrics, "tritongate_websocket_frames_dropped_total") == 0
    assert value(metrics, "tritongate_cache_errors_total", operation="get") >= 1

    log = server.log()
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # all JSON
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "tritongate.access", "api.cache.guard"} <= loggers
    traced_lines = [record for record in records if record.get("request_id") == REQUEST_ID]
    assert {record["logger"] for record in traced_lines} == {
        "api.cache.guard",  # the Redis warning, written while serving this request
        "tritongate.access",
    }
    access = next(r for r in traced_lines if r["logger"] == "tritongate.access")
    assert access["path"] == "/prediction" and access["status"] == 200
    assert any(record.get("request_id") == generated for record in records)
    for secret in (token, key, PASSWORD, REDIS_PASSWORD):
        assert secret not in log
    assert "?token=[redacted]" in log and "?api_key=[redacted]" in log
