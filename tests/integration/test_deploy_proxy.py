"""deploy/nginx/nginx.conf run by a real nginx in front of the real API (uvicorn, real Triton),
as the deployments run it: requests and detection streams pass; oversized heads and bodies, slow
heads and slow bodies stop at the proxy with the proxy's JSON answers while the API keeps
answering; an unreachable API is a 503 with Retry-After. Skipped where nginx is not installed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from serving.launcher import TritonPorts
from tests.integration.live_server import LiveServer
from tests.stack import PROJECT_ROOT

NGINX_CONF = PROJECT_ROOT / "deploy" / "nginx" / "nginx.conf"
NGINX = shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin")

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt nginx-light)")


@dataclass
class Proxy:
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    return TritonPorts.free().http


@contextlib.contextmanager
def running_proxy(upstream_port: int, work: Path) -> Iterator[Proxy]:
    """nginx with the deployment's file: only its addresses changed (upstream `api` and the
    listening ports on 127.0.0.1, /tmp in ``work``)."""
    assert NGINX is not None
    port, health = _free_port(), _free_port()
    text = NGINX_CONF.read_text().replace("/tmp/", f"{work}/")
    replacements = (
        (r"server api:\d+;", f"server 127.0.0.1:{upstream_port};"),
        (r"listen 8080 default_server;", f"listen 127.0.0.1:{port} default_server;"),
        (r"listen 8081;", f"listen 127.0.0.1:{health};"),
    )
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, pattern
    if os.geteuid() == 0:
        # The deployments start nginx as an unprivileged user, so its workers are that user too;
        # started as root, nginx would switch its workers to `nobody`, who cannot write request
        # bodies under pytest's private temporary folder.
        text = "user root;\n" + text
    config = work / "nginx.conf"
    config.write_text(text)
    log_path = work / "nginx.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", f"{work}/"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
        yield Proxy(port, log_path)
    finally:
        process.terminate()  # our own nginx master, by its pid
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with running_proxy(server.port, tmp_path_factory.mktemp("nginx")) as running:
        yield running


def _detect(base_url: str, photo: bytes) -> httpx.Response:
    return httpx.post(
        f"{base_url}/object-detection",
        params={"threshold": 0.0},
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        timeout=60,
    )


def test_requests_and_detection_streams_pass_through_the_proxy(
    proxy: Proxy, photos: list[Path]
) -> None:
    photo = photos[0].read_bytes()
    reply = _detect(proxy.base_url, photo)
    assert reply.status_code == 200 and reply.json()["objects"]
    health = httpx.get(f"{proxy.base_url}/health/ready", timeout=10)
    assert health.status_code == 200

    async def stream() -> dict[str, Any]:
        url = f"ws://127.0.0.1:{proxy.port}/ws/detect"
        async with websockets.connect(url) as connection:
            await connection.send(json.dumps({"threshold": 0.0}))
            await connection.send(photo)
            return json.loads(await asyncio.wait_for(connection.recv(), 30))

    result = asyncio.run(stream())
    assert result["frame"] == 1 and result["objects"]


def test_an_oversized_head_or_body_is_refused_by_the_proxy_with_a_json_detail(
    proxy: Proxy,
) -> None:
    head = httpx.get(f"{proxy.base_url}/health/live", headers={"X-Big": "a" * 9000}, timeout=10)
    assert head.status_code == 431 and head.json() == {"detail": "Request header fields too large."}
    body = httpx.post(
        f"{proxy.base_url}/object-detection",
        content=b"\0" * (10 * 1024 * 1024 + 16 * 1024 + 1),
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert body.status_code == 413 and set(body.json()) == {"detail"}


def test_a_slow_head_is_closed_by_the_proxy_within_its_deadline(proxy: Proxy) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as connection:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        with contextlib.suppress(ConnectionResetError):
            assert connection.recv(1024) == b""
    elapsed = time.monotonic() - started
    assert 9 <= elapsed <= 14, elapsed  # client_header_timeout 10s


def _connections_to(port: int) -> int:
    """Established TCP connections whose local port is ``port`` (the API's side), on IPv4."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        if int(local.split(":")[1], 16) == port and state == "01":
            count += 1
    return count


def test_slow_bodies_stay_at_the_proxy_while_the_api_answers(
    server: LiveServer, proxy: Proxy, photos: list[Path]
) -> None:
    photo = photos[0].read_bytes()
    sockets = []
    try:
        for _ in range(24):  # under the proxy's per-address cap (32), over nothing else
            connection = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            connection.sendall(
                b"POST /object-detection HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 100000\r\n\r\n-"
            )
            sockets.append(connection)
        time.sleep(1)
        # The proxy buffers bodies: none of these requests has reached the API (only idle
        # kept-alive connections from earlier requests may be open there).
        assert _connections_to(server.port) < 8
        statuses = [_detect(proxy.base_url, photo).status_code for _ in range(5)]
        assert statuses == [200] * 5
    finally:
        for connection in sockets:
            connection.close()


def test_an_unreachable_api_is_a_503_with_retry_after(tmp_path: Path) -> None:
    with running_proxy(_free_port(), tmp_path) as proxy:
        reply = httpx.get(f"{proxy.base_url}/health/live", timeout=10)
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
    assert set(reply.json()) == {"detail"}
