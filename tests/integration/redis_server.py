"""Redis for the cache tests: the shared server of ``TEST_REDIS_URL`` (each test under its own
key prefix, removed afterwards), or a private ``redis-server`` that a test may stop and restart
(never the shared one)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from serving.launcher import TritonPorts

TEST_REDIS_URL_VARIABLE = "TEST_REDIS_URL"


def shared_redis_url() -> str:
    url = os.environ.get(TEST_REDIS_URL_VARIABLE)
    if not url:
        pytest.skip(f"Redis tests need {TEST_REDIS_URL_VARIABLE} (e.g. as .ci/run sets it)")
    return url


def unique_prefix() -> str:
    return f"tritongate-test:{uuid.uuid4().hex[:12]}:"


async def delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()


def remove_prefix(url: str, prefix: str) -> None:
    asyncio.run(delete_prefix(url, prefix))


class PrivateRedis:
    """A redis-server of the test's own, on a free port, without persistence."""

    def __init__(self, work_dir: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = TritonPorts.free().http
        self.work_dir = work_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.work_dir),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def _answers(self) -> bool:
        """A plain-socket PING (usable from inside a running event loop)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def private_redis(work_dir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(work_dir)
    try:
        yield server
    finally:
        server.stop()
