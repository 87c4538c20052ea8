"""PostgreSQL restarted during blog writes: requests fail cleanly (503 with Retry-After) while it
is down, the pool recovers by itself, and every acknowledged write (a 201) is in the database.
And a database that cannot be reached at all: 503 for what needs it, the rest keeps working.

The test stops and starts the machine's PostgreSQL cluster (``pg_ctlcluster``), so it runs only
where ``TEST_DATABASE_URL`` points at a local cluster that this user may control (as in CI).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import websockets
from sqlalchemy import select
from sqlalchemy.engine import make_url

from api.db.tables import Post
from serving.launcher import LocalTriton, TritonPorts
from tests.integration.accounts import make_account
from tests.integration.api_client import app_settings, db_app_settings, running_app
from tests.integration.databases import postgres_server_url
from tests.integration.live_server import live_server

WRITERS = 4
OUTAGE_S = 3.0
RECOVERY_BAR_S = 5.0


def _cluster() -> tuple[str, str]:
    """(version, name) of the local cluster behind ``TEST_DATABASE_URL``, or skip."""
    url = make_url(postgres_server_url())
    if url.host not in ("127.0.0.1", "localhost") or shutil.which("pg_ctlcluster") is None:
        pytest.skip("needs a local PostgreSQL cluster and pg_ctlcluster")
    versions = sorted(Path("/etc/postgresql").glob("*/main"))
    if not versions:
        pytest.skip("no cluster under /etc/postgresql")
    return versions[-1].parent.name, "main"


def _pg_ctl(action: str, cluster: tuple[str, str]) -> None:
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and action == "stop":
        pytest.skip(f"cannot control the PostgreSQL cluster: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr


def test_postgres_restart_during_writes_loses_no_acknowledged_write(
    postgres_database: str,
) -> None:
    cluster = _cluster()
    settings = db_app_settings(postgres_database)
    acknowledged: list[int] = []
    answers: list[tuple[float, float, int, str | None]] = []  # started, ended, status, Retry-After
    numbers = itertools.count()

    async def writer(
        client: httpx.AsyncClient, headers: dict[str, str], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            title = f"restart-{next(numbers)}"
            started = time.monotonic()
            reply = await client.post(
                "/posts", json={"title": title, "content": "x"}, headers=headers, timeout=30
            )
            answers.append(
                (started, time.monotonic(), reply.status_code, reply.headers.get("retry-after"))
            )
            if reply.status_code == 201:
                acknowledged.append(reply.json()["id"])
            else:
                await asyncio.sleep(0.05)

    async def scenario() -> tuple[float, float, set[int]]:
        async with running_app(settings, inference=False) as (app, client):
            account = await make_account(app)
            stop = asyncio.Event()
            writers = [
                asyncio.create_task(writer(client, account.headers, stop)) for _ in range(WRITERS)
            ]
            await asyncio.sleep(1.0)
            down = time.monotonic()
            await asyncio.to_thread(_pg_ctl, "stop", cluster)
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(_pg_ctl, "start", cluster)
            up = time.monotonic()
            await asyncio.sleep(RECOVERY_BAR_S + 1.0)
            stop.set()
            await asyncio.gather(*writers)
            async with app.state.database.sessions() as session:
                stored = set((await session.scalars(select(Post.id))).all())
            return down, up, stored

    try:
        down, up, stored = asyncio.run(scenario())
    finally:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "start"],
            capture_output=True,
            timeout=60,
        )
    statuses: dict[int, int] = {}
    for _, _, status, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    failures = [(s, e) for s, e, status, _ in answers if status != 201]
    recovered_in = max(0.0, max(e for _, e in failures) - up) if failures else 0.0
    slowest = max(e - s for s, e, _, _ in answers)
    print(
        f"\n{len(answers)} writes: {statuses}; PostgreSQL down {up - down:.1f} s; writes "
        f"succeed again {recovered_in:.2f} s after it started; slowest answer {slowest:.2f} s; "
        f"{len(acknowledged)} acknowledged, {len(set(acknowledged) & stored)} of them stored"
    )
    assert set(statuses) <= {201, 503}, statuses
    assert statuses.get(503, 0) > 0, "the outage was not noticed"
    assert all(retry for _, _, status, retry in answers if status == 503)
    assert set(acknowledged) <= stored, "an acknowledged write was lost"
    assert recovered_in <= RECOVERY_BAR_S
    assert slowest <= 10.0


def test_an_unreachable_database_gives_503_to_what_needs_it_and_nothing_else(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> None:
    """Nothing listens at the database's address: authenticated routes and stream handshakes are
    refused for now (503 with Retry-After), never a 500; what needs no database still works."""
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{TritonPorts.free().http}/tritongate"
    settings = app_settings(
        exported_repository,
        triton_url=triton.grpc_url,
        database_url=nowhere,
        migrate_on_startup=False,
        inference_auth="required",
    )
    bearer = {"Authorization": "Bearer some-token"}
    with live_server(settings, tmp_path) as server:
        me = httpx.get(f"{server.base_url}/users/me", headers=bearer, timeout=30)
        predict = httpx.post(
            f"{server.base_url}/prediction", json={"text": "gpu"}, headers=bearer, timeout=30
        )
        login = httpx.post(
            f"{server.base_url}/token", data={"username": "a@b.co", "password": "x" * 8}
        )
        live = httpx.get(f"{server.base_url}/health/live", timeout=30)

        async def handshake() -> int:
            url = f"{server.ws_url}/object-detection?token=some-token"
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            return refused.value.response.status_code

        stream_status = asyncio.run(handshake())
        log = server.log()
    print(
        f"\ndatabase unreachable: /users/me {me.status_code}, /prediction {predict.status_code}, "
        f"/token {login.status_code}, stream handshake {stream_status}, /health/live "
        f"{live.status_code}"
    )
    for reply in (me, predict, login):
        assert reply.status_code == 503, reply.text
        assert reply.headers["retry-after"] and "database" in reply.json()["detail"]
    assert stream_status == 503
    assert live.status_code == 200
    assert "Traceback" not in log
