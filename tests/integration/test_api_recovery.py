"""Triton stopped under the API: 503 with Retry-After and a failing readiness probe, then
recovery without restarting the API once Triton is back on the same address."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from serving.launcher import LocalTriton, TritonPorts
from tests.integration.api_client import app_settings, running_app

RECOVERY_SECONDS = 15.0


def test_triton_down_gives_503_then_recovers(exported_repository: Path, tmp_path: Path) -> None:
    server = LocalTriton(exported_repository, tmp_path / "triton", ports=TritonPorts.free())
    server.start()

    async def scenario() -> tuple[httpx.Response, httpx.Response, float, httpx.Response]:
        settings = app_settings(exported_repository, triton_url=server.grpc_url)
        async with running_app(settings) as (_, client):
            before = await client.post("/prediction", json={"text": "cpu ram"})
            assert before.status_code == 200
            await asyncio.to_thread(server.kill)
            down = await client.post("/prediction", json={"text": "cpu ram"})
            not_ready = await client.get("/health/ready")
            await asyncio.to_thread(server.start)
            started = time.monotonic()
            while True:
                back = await client.post("/prediction", json={"text": "cpu ram"})
                if back.status_code == 200 or time.monotonic() - started > RECOVERY_SECONDS:
                    break
                await asyncio.sleep(0.1)
            recovered_in = time.monotonic() - started
            ready = await client.get("/health/ready")
            assert ready.status_code == 200
            return down, not_ready, recovered_in, back

    try:
        down, not_ready, recovered_in, back = asyncio.run(scenario())
    finally:
        server.stop()
    assert down.status_code == 503
    assert int(down.headers["retry-after"]) >= 1
    assert "unreachable" in down.json()["detail"]
    assert not_ready.status_code == 503
    assert not_ready.json()["server"] is False
    assert back.status_code == 200, back.text
    print(f"\nrecovered {recovered_in:.2f} s after Triton was ready again")
