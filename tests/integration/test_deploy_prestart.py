"""The prestart step (``api/platform/prestart.py``, ``tritongate prestart``): bounded waits with a
clear failure for a database or a Triton that does not answer, migrations applied once they do, and
``serve`` refusing to start workers when prestart fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect

from api.config import Settings
from api.db.engine import create_engine
from api.platform.prestart import PrestartError, prestart, wait_until
from serving.launcher import LocalTriton, TritonPorts

TRITONGATE = str(Path(sys.executable).parent / "tritongate")


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, work_dir=tmp_path, **values)  # type: ignore[arg-type]


def _closed_port() -> int:
    return TritonPorts.free().http  # free now: nothing listens there


async def _tables(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


def test_ready_database_and_triton_pass_and_the_database_is_migrated(
    triton: LocalTriton, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, triton_url=triton.grpc_url)
    messages: list[str] = []
    asyncio.run(prestart(settings, messages.append))
    assert any("migrated" in message for message in messages)
    assert messages[-1] == f"Triton ready at {triton.grpc_url}"
    assert {"users", "posts", "comments", "alembic_version"} <= asyncio.run(_tables(settings))


def test_an_unreachable_database_fails_in_bounded_time_with_the_reason(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://app:hunter2@127.0.0.1:{_closed_port()}/app"
    settings = _settings(tmp_path, database_url=url, prestart_timeout_s=1.5)
    messages: list[str] = []
    started = time.monotonic()
    with pytest.raises(PrestartError) as raised:
        asyncio.run(prestart(settings, messages.append))
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "the database at postgresql+asyncpg://app:***@127.0.0.1" in message
    assert "did not answer within 1.5 s" in message and "attempts" in message
    assert "hunter2" not in message + " ".join(messages)
    assert messages and messages[0].startswith("waiting for the database")


def test_an_unreachable_triton_fails_after_the_database_is_ready(tmp_path: Path) -> None:
    url = f"127.0.0.1:{_closed_port()}"
    settings = _settings(tmp_path, triton_url=url, prestart_timeout_s=1.5)
    with pytest.raises(PrestartError, match=rf"Triton at {url} did not answer within 1.5 s"):
        asyncio.run(prestart(settings, lambda message: None))


def test_wait_until_backs_off_and_returns_the_attempts() -> None:
    calls: list[float] = []

    async def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("not yet")

    assert asyncio.run(wait_until(flaky, "a service", 10, lambda message: None)) == 3
    first, second = calls[1] - calls[0], calls[2] - calls[1]
    assert 0.4 < first < second, "the delay doubles"


def test_the_command_and_serve_exit_1_with_the_reason(
    exported_repository: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "TRITONGATE_WORK_DIR": str(tmp_path),
        "TRITONGATE_MODEL_REPOSITORY": str(exported_repository),
        "TRITONGATE_TRITON_URL": f"127.0.0.1:{_closed_port()}",
        "TRITONGATE_PRESTART_TIMEOUT_S": "1",
        "COLUMNS": "200",
    }
    for command in (["prestart"], ["serve", "--port", str(_closed_port())]):
        result = subprocess.run(
            [TRITONGATE, *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1, result.stderr
        assert "did not answer within 1 s" in result.stderr, result.stderr
        assert "TritonGate API ready" not in result.stderr
