"""Logs and stream metrics of a real uvicorn process: JSON lines for our loggers and uvicorn's,
the request id on the lines of its request, no credential ever written (bearer token, API key,
password, the Redis URL's password, WebSocket query-string tokens however they are spelled), and
no line forged by control characters in a path (JSON and text formats)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


def _credentials(base: str, email: str = "logs@example.com") -> tuple[str, str]:
    """A new user's bearer token and API key, through the real endpoints."""
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
    assert {"uvicorn.error", "tritongate.access", "api.inference.cache.guard"} <= loggers
    traced_lines = [record for record in records if record.get("request_id") == REQUEST_ID]
    assert {record["logger"] for record in traced_lines} == {
        "api.inference.cache.guard",  # the Redis warning, written while serving this request
        "tritongate.access",
    }
    access = next(r for r in traced_lines if r["logger"] == "tritongate.access")
    assert access["path"] == "/prediction" and access["status"] == 200
    assert any(record.get("request_id") == generated for record in records)
    for secret in (token, key, PASSWORD, REDIS_PASSWORD):
        assert secret not in log
    assert "?token=[redacted]" in log and "?api_key=[redacted]" in log


async def _handshake(url: str) -> bool:
    """Whether the server accepted a WebSocket handshake at ``url`` (the query sent as is)."""
    try:
        async with websockets.connect(url, open_timeout=30):
            return True
    except websockets.InvalidStatus:
        return False


def test_encoded_credential_names_in_stream_queries_are_redacted(server: LiveServer) -> None:
    """uvicorn logs each handshake with its raw query string; Starlette decodes the names, so
    ``?%74oken=`` and ``?api%5Fkey=`` authenticate: none of these spellings reach the log."""
    token, key = _credentials(server.base_url, "encoded-logs@example.com")
    key_rest = key.removeprefix("tg_")
    attempts = {
        f"/ws/detect?%74oken={token}": True,
        f"/ws/detect?api%5Fkey={key}": True,
        f"/object-detection?api_key=tg%5F{key_rest}": True,
        f"/ws/detect?TOKEN={token}": False,  # names are case-sensitive: refused, still logged
        f"/ws/detect?token=tg%5F{key_rest}": False,  # a key where a token goes
    }
    for path, accepted in attempts.items():
        assert asyncio.run(_handshake(f"{server.ws_url}{path}")) is accepted, path
    for path in attempts:  # every handshake is logged, with its query (redacted)
        _wait_for(server, f"{path.split('=')[0]}=[redacted]")
    log = server.log()
    for secret in (token, key, key_rest):
        assert secret not in log


FORGED = "2026-01-05T10:12:03.512Z INFO     tritongate.access [forged] GET /admin 200 1.00 ms"
FORGED_TARGET = f"/no-such%0d%0a{quote(FORGED)}%0a%E2%80%A8tail"


def _raw_get(port: int, target: str) -> bytes:
    """A GET with ``target`` exactly as written (clients would normalise it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        connection.sendall(request.encode("ascii"))
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply


def _wait_for(server: LiveServer, text: str) -> str:
    deadline = time.monotonic() + 5
    while text not in (log := server.log()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    return log


def test_a_path_with_line_breaks_stays_one_json_object(server: LiveServer) -> None:
    assert _raw_get(server.port, FORGED_TARGET).startswith(b"HTTP/1.1 404")
    log = _wait_for(server, "[forged]")
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    (access,) = [r for r in records if "[forged]" in r.get("path", "")]
    assert access["path"] == f"/no-such\r\n{FORGED}\n\u2028tail" and access["status"] == 404
    assert not any(line.startswith(FORGED[:24]) for line in log.splitlines())


def test_a_path_with_line_breaks_stays_one_text_line(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> None:
    settings = app_settings(
        exported_repository, triton_url=triton.grpc_url, log_format="text", access_log=True
    )
    with live_server(settings, tmp_path) as text_server:
        assert _raw_get(text_server.port, FORGED_TARGET).startswith(b"HTTP/1.1 404")
        log = _wait_for(text_server, "[forged]")
    (line,) = [line for line in log.splitlines() if "[forged]" in line]
    assert " tritongate.access [" in line
    assert f"GET /no-such\\r\\n{FORGED}\\n\\u2028tail 404 " in line
    assert not any(line.startswith(FORGED[:24]) for line in log.splitlines())
