"""A detection stream lives only as long as the credential it was opened with: real uvicorn
servers (two "workers" sharing one SQLite database) and a real local tritonserver, with
``inference_auth=required``.

* logging out closes the token's streams of the worker that served the logout at once (1008,
  after an error message naming the reason);
* deleting an API key closes its streams in that worker at once too;
* a worker that did not serve the logout or the key deletion, an expired token: the stream's
  periodic re-check (``stream_revalidate_s``) or its token's expiry closes it with 1008.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from api.inference.streaming import CREDENTIALS_ENDED, TOKEN_EXPIRED
from serving.launcher import LocalTriton
from tests.integration.api_client import app_settings
from tests.integration.faults import jpeg
from tests.integration.live_server import LiveServer, live_server

REVALIDATE_S = 3.0
TOKEN_LIFETIME_S = 3


@dataclass(frozen=True)
class Workers:
    """Two API processes on one database, as `tritongate serve --workers 2` would run."""

    first: LiveServer
    second: LiveServer


@pytest.fixture(scope="module")
def workers(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    settings = app_settings(
        exported_repository,
        triton_url=triton.grpc_url,
        inference_auth="required",
        stream_revalidate_s=REVALIDATE_S,
    )
    logs = tmp_path_factory.mktemp("workers")
    with live_server(settings, logs) as first, live_server(settings, logs) as second:
        yield Workers(first, second)


@dataclass(frozen=True)
class Account:
    token: str
    key: str
    key_id: int

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _account(server: LiveServer) -> Account:
    """A new user with an access token and an API key."""
    email = f"viewer-{os.urandom(4).hex()}@example.com"
    password = "a long enough password"
    base = server.base_url
    assert httpx.post(f"{base}/register", json={"email": email, "password": password}).is_success
    login = httpx.post(f"{base}/token", data={"username": email, "password": password})
    token = login.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    key = httpx.post(f"{base}/users/me/api-keys", json={"name": "camera"}, headers=headers)
    assert key.status_code == 201, key.text
    return Account(token, key.json()["key"], key.json()["id"])


async def _open(server: LiveServer, path: str = "", **options: Any) -> Any:
    """A stream that has answered one frame (so it is accepted and tracked)."""
    socket = await websockets.connect(f"{server.ws_url}/object-detection{path}", **options)
    await socket.send(jpeg((20, 40, 60)))
    result = json.loads(await asyncio.wait_for(socket.recv(), 30))
    assert result["frame"] == 1 and "error" not in result, result
    return socket


async def _closed_within(socket: Any, timeout: float) -> tuple[list[dict[str, Any]], Any, float]:
    """Messages until the server closes (frames keep going so the stream is not idle), the close
    frame and the seconds it took; fails if still open after ``timeout``."""
    started = time.monotonic()
    messages: list[dict[str, Any]] = []

    async def keep_streaming() -> None:
        while True:
            await asyncio.sleep(0.5)
            await socket.send(jpeg((20, 40, 60)))

    sender = asyncio.create_task(keep_streaming())
    try:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                left = timeout - (time.monotonic() - started)
                messages.append(json.loads(await asyncio.wait_for(socket.recv(), max(left, 0))))
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return messages, closed.value.rcvd, time.monotonic() - started


def _notices(messages: list[dict[str, Any]]) -> list[str]:
    return [message["error"] for message in messages if message.get("frame", 0) is None]


def test_logout_closes_the_tokens_streams_at_once(workers: Workers) -> None:
    server = workers.first
    account = _account(server)

    async def scenario() -> tuple[int, tuple[list[dict[str, Any]], Any, float]]:
        socket = await _open(server, f"?token={account.token}")
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            logout = await client.post("/logout", headers=account.bearer)
        return logout.status_code, await _closed_within(socket, REVALIDATE_S * 3)

    status, (messages, close, seconds) = asyncio.run(scenario())
    print(f"\nlogout → stream closed after {seconds * 1000:.0f} ms: {close.code} {close.reason!r}")
    assert status == 204
    assert close.code == 1008 and close.reason == "logged out"
    assert _notices(messages) == ["stream closed: logged out"]
    assert seconds < 1.0, "at once, not at the next re-check"


def test_a_stream_opened_with_the_login_cookie_closes_when_that_token_is_logged_out(
    workers: Workers,
) -> None:
    server = workers.first
    account = _account(server)
    headers = {"Origin": server.base_url, "Cookie": f"token={account.token}"}

    async def scenario() -> tuple[list[dict[str, Any]], Any, float]:
        socket = await _open(server, additional_headers=headers)
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            assert (await client.post("/logout", headers=account.bearer)).status_code == 204
        return await _closed_within(socket, REVALIDATE_S * 3)

    messages, close, seconds = asyncio.run(scenario())
    assert close.code == 1008 and close.reason == "logged out"
    assert _notices(messages) == ["stream closed: logged out"]
    assert seconds < 1.0


def test_a_logout_served_by_another_worker_closes_the_stream_at_its_next_re_check(
    workers: Workers,
) -> None:
    account = _account(workers.first)

    async def scenario() -> tuple[list[dict[str, Any]], Any, float]:
        socket = await _open(workers.first, f"?token={account.token}")
        async with httpx.AsyncClient(base_url=workers.second.base_url) as client:
            assert (await client.post("/logout", headers=account.bearer)).status_code == 204
        return await _closed_within(socket, REVALIDATE_S * 3)

    messages, close, seconds = asyncio.run(scenario())
    print(
        f"\nlogout on the other worker → closed after {seconds:.2f} s ({REVALIDATE_S:g} s period)"
    )
    assert close.code == 1008 and close.reason == CREDENTIALS_ENDED
    assert _notices(messages) == [f"stream closed: {CREDENTIALS_ENDED}"]
    assert seconds <= REVALIDATE_S + 1.5


@pytest.mark.parametrize("where", ["same worker", "other worker"])
def test_a_stream_opened_with_an_api_key_closes_after_the_key_is_deleted(
    workers: Workers, where: str
) -> None:
    server = workers.first
    deleting = server if where == "same worker" else workers.second
    account = _account(server)
    other = _account(server)  # another user's stream stays open

    async def scenario() -> tuple[int, tuple[list[dict[str, Any]], Any, float], dict[str, Any]]:
        socket = await _open(server, additional_headers={"X-API-Key": account.key})
        bystander = await _open(server, additional_headers={"X-API-Key": other.key})
        async with httpx.AsyncClient(base_url=deleting.base_url) as client:
            deleted = await client.delete(
                f"/users/me/api-keys/{account.key_id}", headers=account.bearer
            )
        closing = await _closed_within(socket, REVALIDATE_S * 3)
        async with bystander:
            await bystander.send(jpeg((90, 90, 90)))
            still = json.loads(await asyncio.wait_for(bystander.recv(), 30))
        return deleted.status_code, closing, still

    status, (messages, close, seconds), still = asyncio.run(scenario())
    print(f"\nAPI key deleted ({where}) → stream closed after {seconds:.2f} s: {close.reason!r}")
    assert status == 204
    assert close.code == 1008
    if where == "same worker":  # the route closes the key's streams of its own worker at once
        assert close.reason == "API key deleted" and seconds < 1.0
    else:  # the stream's own re-check
        assert close.reason == CREDENTIALS_ENDED and seconds <= REVALIDATE_S + 1.5
    assert _notices(messages) == [f"stream closed: {close.reason}"]
    assert "error" not in still and still["frame"] >= 2, "another user's stream goes on"


def test_a_stream_closes_when_its_token_expires(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> None:
    settings = app_settings(
        exported_repository,
        triton_url=triton.grpc_url,
        inference_auth="required",
        access_token_expire_s=TOKEN_LIFETIME_S,
        stream_revalidate_s=60.0,  # the expiry itself closes it, not a periodic check
    )
    with live_server(settings, tmp_path) as server:
        account = _account(server)
        issued = time.monotonic()

        async def scenario() -> tuple[list[dict[str, Any]], Any, float]:
            socket = await _open(server, f"?token={account.token}")
            return await _closed_within(socket, TOKEN_LIFETIME_S * 3)

        messages, close, _ = asyncio.run(scenario())
        lived = time.monotonic() - issued
    print(f"\n{TOKEN_LIFETIME_S} s token: stream closed {lived:.2f} s after the token was issued")
    assert close.code == 1008 and close.reason == TOKEN_EXPIRED
    assert _notices(messages) == [f"stream closed: {TOKEN_EXPIRED}"]
    assert TOKEN_LIFETIME_S - 0.5 <= lived <= TOKEN_LIFETIME_S + 1.5
