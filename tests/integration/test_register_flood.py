"""A flood of anonymous registrations against the real server (uvicorn, real argon2) does not
starve logins nor blow up memory: new hashes run on the bounded hashing pool
(api/accounts/security.py),
which keeps a thread for verifications and refuses what it cannot queue with 503.

The attack of issue #15 (finding 5): 150 sign-ups at concurrency 32 took a real login from
115 ms to 2.9 s and the server's RSS to ~1.2 GB. The registration limit per address is lifted
here (the test settings' default) so that the flood reaches the pool, as it would from many
addresses.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving.launcher import LocalTriton
from tests.integration.live_server import LiveServer, live_api
from tests.integration.process_probe import ProcessSampler, rss_mib

PASSWORD = "correct horse battery staple"
FLOOD_REQUESTS = 150
FLOOD_CONCURRENCY = 32
BASELINE_LOGINS = 5
# Bounds with a wide margin for a shared 2-core machine: the unbounded hashing measured a
# median login of 2.9 s and ~1.2 GB (issue #15); the pool keeps a login to about one hash.
MAX_MEDIAN_LOGIN_S = 1.0
MAX_RSS_GROWTH_MIB = 400.0


@dataclass
class Flood:
    statuses: Counter[int]
    retry_after: set[str]
    baseline_login_s: float
    flood_logins_s: list[float]
    rss_before_mib: float
    rss_peak_mib: float
    elapsed_s: float


async def _login(client: httpx.AsyncClient, email: str) -> float:
    began = time.perf_counter()
    reply = await client.post("/token", data={"username": email, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    return time.perf_counter() - began


async def flood(server: LiveServer) -> Flood:
    """Baseline login latency, then logins one after another while ``FLOOD_REQUESTS``
    registrations run ``FLOOD_CONCURRENCY`` at a time; RSS sampled throughout."""
    limits = httpx.Limits(max_connections=FLOOD_CONCURRENCY + 4)
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as client,
        httpx.AsyncClient(base_url=server.base_url, timeout=60) as login_client,
    ):
        email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
        created = await client.post("/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        await _login(login_client, email)  # warm-up
        baseline = statistics.median(
            [await _login(login_client, email) for _ in range(BASELINE_LOGINS)]
        )

        sampler = ProcessSampler(server.process.pid, interval=0.1).start()
        rss_before = rss_mib(server.process.pid)
        statuses: Counter[int] = Counter()
        retry_after: set[str] = set()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for number in range(FLOOD_REQUESTS):
            queue.put_nowait(number)

        async def attacker() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                body = {
                    "email": f"flood-{uuid.uuid4().hex}-{number}@x.example",
                    "password": "p" * 12,
                }
                reply = await client.post("/register", json=body)
                statuses[reply.status_code] += 1
                if reply.status_code in (429, 503):
                    retry_after.add(reply.headers.get("retry-after", "missing"))

        began = time.perf_counter()
        attackers = [asyncio.create_task(attacker()) for _ in range(FLOOD_CONCURRENCY)]
        logins: list[float] = []
        await asyncio.sleep(0.2)  # the flood is under way
        while not all(task.done() for task in attackers):
            logins.append(await _login(login_client, email))
            await asyncio.sleep(0.05)
        await asyncio.gather(*attackers)
        elapsed = time.perf_counter() - began
        samples = sampler.stop()
    return Flood(
        statuses=statuses,
        retry_after=retry_after,
        baseline_login_s=baseline,
        flood_logins_s=logins,
        rss_before_mib=rss_before,
        rss_peak_mib=max(sample.rss_mib for sample in samples),
        elapsed_s=elapsed,
    )


def test_a_registration_flood_does_not_starve_logins(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> None:
    with live_api(triton, exported_repository, tmp_path) as server:
        result = asyncio.run(flood(server))
    median = statistics.median(result.flood_logins_s)
    print(
        f"\nregistration flood: {dict(result.statuses)} in {result.elapsed_s:.1f} s; "
        f"Retry-After {sorted(result.retry_after)}; "
        f"login baseline {result.baseline_login_s:.3f} s, "
        f"during the flood median {median:.3f} s, max {max(result.flood_logins_s):.3f} s "
        f"({len(result.flood_logins_s)} logins); RSS {result.rss_before_mib:.0f} MiB before, "
        f"peak {result.rss_peak_mib:.0f} MiB"
    )
    assert sum(result.statuses.values()) == FLOOD_REQUESTS
    assert set(result.statuses) <= {201, 503}, result.statuses  # never a 500, never a hang
    assert result.statuses[201] > 0
    assert "missing" not in result.retry_after
    assert len(result.flood_logins_s) >= 3
    assert median <= MAX_MEDIAN_LOGIN_S, result.flood_logins_s
    assert result.rss_peak_mib - result.rss_before_mib <= MAX_RSS_GROWTH_MIB
