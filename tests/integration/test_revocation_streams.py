"""Ending a user's credentials ends their live detection streams at once: a password change,
signing out everywhere, an admin's revocation and a deactivation each close the user's streams
(opened with a token or with an API key) in the worker that served them, with 1008 and the
reason, while another user's stream goes on. A real uvicorn server (``inference_auth=required``,
re-checks far apart, so only the immediate close can pass) and a real local tritonserver.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.accounts.admin import set_admin
from serving.launcher import LocalTriton
from tests.integration.api_client import app_settings
from tests.integration.faults import jpeg
from tests.integration.live_server import LiveServer, live_server
from tests.integration.test_stream_credentials import _account, _closed_within, _notices, _open

PASSWORD = "a long enough password"  # the one test_stream_credentials._account registers with
CLOSED_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """The server and an admin's bearer headers."""
    settings = app_settings(
        exported_repository,
        triton_url=triton.grpc_url,
        inference_auth="required",
        stream_revalidate_s=600.0,
    )
    with live_server(settings, tmp_path_factory.mktemp("revocation")) as running:
        admin = _account(running)
        with httpx.Client(base_url=running.base_url) as client:
            email = client.get("/users/me", headers=admin.bearer).json()["email"]
        assert asyncio.run(set_admin(settings, email, True))
        yield running, admin.bearer


def _user_id(server: LiveServer, headers: dict[str, str]) -> int:
    return int(httpx.get(f"{server.base_url}/users/me", headers=headers).json()["id"])


ACTIONS = {
    # action: (method, path, body, who sends it, the close reason)
    "password change": (
        "PATCH",
        "/users/me",
        {"password": "another long password", "current_password": PASSWORD},
        "user",
        "password changed",
    ),
    "sign out everywhere": ("DELETE", "/users/me/tokens", None, "user", "signed out everywhere"),
    "admin revocation": (
        "DELETE",
        "/users/{user_id}/tokens",
        None,
        "admin",
        "credentials revoked by an admin",
    ),
    "deactivation": (
        "PATCH",
        "/users/{user_id}",
        {"is_active": False},
        "admin",
        "account deactivated",
    ),
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_ending_a_users_credentials_closes_their_streams_at_once(
    server: tuple[LiveServer, dict[str, str]], action: str
) -> None:
    live, admin = server
    method, path, body, sender, reason = ACTIONS[action]
    account = _account(live)
    bystander = _account(live)
    url = path.format(user_id=_user_id(live, account.bearer))
    headers = admin if sender == "admin" else account.bearer

    async def scenario() -> tuple[int, list[tuple[list[dict[str, Any]], Any, float]], Any]:
        by_token = await _open(live, f"?token={account.token}")
        by_key = await _open(live, additional_headers={"X-API-Key": account.key})
        other = await _open(live, additional_headers={"X-API-Key": bystander.key})
        async with httpx.AsyncClient(base_url=live.base_url) as client:
            reply = await client.request(method, url, json=body, headers=headers)
        closings = [await _closed_within(socket, 10.0) for socket in (by_token, by_key)]
        async with other:
            await other.send(jpeg((90, 90, 90)))
            still = json.loads(await asyncio.wait_for(other.recv(), 30))
        return reply.status_code, closings, still

    status, closings, still = asyncio.run(scenario())
    seconds = [round(closing[2], 3) for closing in closings]
    print(f"\n{action}: {status}; token and key streams closed after {seconds} s ({reason!r})")
    assert status in (200, 204)
    for messages, close, elapsed in closings:
        assert close.code == 1008 and close.reason == reason
        assert _notices(messages) == [f"stream closed: {reason}"]
        assert elapsed < CLOSED_WITHIN_S, "at once, not at a re-check"
    assert "error" not in still and still["frame"] >= 2, "another user's stream goes on"
