"""The prestart step: wait for the database and Triton, then apply the migrations.

Run by ``tritongate serve`` before any API worker starts, and alone as ``tritongate prestart``
(e.g. a one-off migration step in a deployment pipeline). Every wait is bounded by
``TRITONGATE_PRESTART_TIMEOUT_S``: attempts back off from 0.5 s to 5 s, and when time runs out
the step fails with what it waited for, where, and the last error, instead of letting workers
crash-loop on a database or an inference server that is still starting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from api.config import Settings
from api.db.engine import create_engine
from api.db.migrate import migrate_database, safe_url
from serving.client import TritonGrpcClient

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0


class PrestartError(RuntimeError):
    """A dependency did not answer in time; the message says which and why."""


async def wait_until(
    check: Callable[[], Awaitable[None]],
    what: str,
    timeout_s: float,
    log: Callable[[str], None],
) -> int:
    """Call ``check`` until it returns without raising; the number of attempts it took.

    Raises :class:`PrestartError` with the last error once ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    delay = FIRST_DELAY_S
    attempt = 0
    while True:
        attempt += 1
        try:
            await check()
            return attempt
        except Exception as error:  # any failure means "not yet": it is reported at the end
            last = f"{type(error).__name__}: {error}".strip()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PrestartError(
                f"{what} did not answer within {timeout_s:g} s ({attempt} attempts); "
                f"last error: {last}"
            )
        if attempt == 1:
            log(f"waiting for {what} (up to {timeout_s:g} s): {last}")
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_DELAY_S)


async def check_database(settings: Settings) -> None:
    """One connection and ``SELECT 1``."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def check_triton(url: str) -> None:
    """Triton answers over gRPC and reports ready (every model loaded)."""
    client = TritonGrpcClient(url)
    try:
        if not await client.server_ready():
            raise ConnectionError(f"Triton at {url} is unreachable or still loading models")
    finally:
        await client.close()


async def prestart(settings: Settings, log: Callable[[str], None]) -> None:
    """Database reachable (and migrated when ``migrate_on_startup``), Triton ready if configured."""
    database = f"the database at {safe_url(settings.database_url)}"
    await wait_until(lambda: check_database(settings), database, settings.prestart_timeout_s, log)
    if settings.migrate_on_startup:
        await migrate_database(settings)
        log(f"database ready and migrated: {safe_url(settings.database_url)}")
    else:
        log(f"database ready: {safe_url(settings.database_url)} (migrations left to the operator)")
    if settings.inference_backend == "triton" and settings.triton_url:
        url = settings.triton_url
        await wait_until(
            lambda: check_triton(url), f"Triton at {url}", settings.prestart_timeout_s, log
        )
        log(f"Triton ready at {url}")
