"""``/metrics`` after known traffic through a real tritonserver, its token (loopback clients only
without one), and two gunicorn workers under ``tritongate serve`` whose counts both reach one
scrape."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from serving.launcher import LocalTriton, TritonPorts
from tests.integration.api_client import app_settings, running_app
from tests.integration.prometheus_text import samples, value

TEXTS = 12
REPEATS = 3


def test_metrics_count_known_traffic(triton: LocalTriton, exported_repository: Path) -> None:
    async def check() -> str:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url, cache_enabled=True)
        async with running_app(settings) as (_, client):
            texts = [f"computer cpu memory ram {n} {uuid.uuid4().hex}" for n in range(TEXTS)]
            replies = await asyncio.gather(
                *(client.post("/prediction", json={"text": text}) for text in texts)
            )
            assert all(reply.status_code == 200 for reply in replies)
            for _ in range(REPEATS):
                hit = await client.post("/prediction", json={"text": texts[0]})
                assert hit.headers["x-cache"] == "hit"
            assert (await client.get("/models/yolos")).status_code == 200
            assert (await client.get("/no/such/page")).status_code == 404
            scrape = await client.get("/metrics")
            assert scrape.status_code == 200
            assert scrape.headers["content-type"].startswith("text/plain")
            return scrape.text

    text = asyncio.run(check())
    prediction = {"method": "POST", "route": "/prediction", "status": "200"}
    assert value(text, "tritongate_http_requests_total", **prediction) == TEXTS + REPEATS
    assert value(text, "tritongate_http_request_duration_seconds_count", **prediction) == (
        TEXTS + REPEATS
    )
    assert value(text, "tritongate_http_requests_total", route="/models/{name}") == 1
    assert value(text, "tritongate_http_requests_total", route="unmatched", status="404") == 1
    assert value(text, "tritongate_cache_misses_total", model="newsgroups") == TEXTS
    assert value(text, "tritongate_cache_hits_total", model="newsgroups") == REPEATS
    # Every miss went through the batcher once, one row each.
    assert value(text, "tritongate_batch_size_sum", model="newsgroups") == TEXTS
    batches = value(text, "tritongate_batch_size_count", model="newsgroups")
    assert 1 <= batches <= TEXTS
    assert value(text, "tritongate_queue_wait_seconds_count", model="newsgroups") == TEXTS
    assert value(text, "tritongate_triton_roundtrip_seconds_count", model="newsgroups") == batches
    buckets = {
        labels: count
        for (name, labels), count in samples(text).items()
        if name == "tritongate_batch_size_bucket" and ("model", "newsgroups") in labels
    }
    assert buckets and max(buckets.values()) == batches, "a non-empty batch-size histogram"
    assert value(text, "tritongate_queue_depth", model="newsgroups") == 0
    assert value(text, "tritongate_rejected_total", model="newsgroups") == 0
    assert "process_cpu_seconds_total" in text


def test_refusals_are_counted(triton: LocalTriton, exported_repository: Path) -> None:
    """A one-item queue and a 1 ms deadline: every 503 and 504 has its counter."""

    async def check() -> tuple[list[int], str]:
        settings = app_settings(
            exported_repository,
            triton_url=triton.grpc_url,
            queue_size=1,
            request_timeout_s=0.001,
            cache_enabled=False,
        )
        async with running_app(settings) as (_, client):
            replies = await asyncio.gather(
                *(client.post("/prediction", json={"text": f"ram cpu {n}"}) for n in range(40))
            )
            assert "x-cache" not in replies[0].headers, "no X-Cache header without a cache"
            return [reply.status_code for reply in replies], (await client.get("/metrics")).text

    statuses, text = asyncio.run(check())
    assert set(statuses) <= {200, 503, 504} and 503 in statuses
    full = value(text, "tritongate_rejected_total", model="newsgroups", reason="queue_full")
    late = value(text, "tritongate_rejected_total", model="newsgroups", reason="deadline")
    assert full == statuses.count(503)
    assert late == statuses.count(504)
    assert value(text, "tritongate_http_requests_total", status="503") == statuses.count(503)


def test_metrics_token_and_switch(tmp_path: Path) -> None:
    async def check() -> None:
        settings = app_settings(tmp_path, metrics_token="scrape-secret")
        async with running_app(settings, inference=False) as (_, client):
            missing = await client.get("/metrics")
            assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
            assert right.status_code == 200 and "tritongate_http_requests_total" in right.text
            schema = (await client.get("/openapi.json")).json()
            assert "/metrics" not in schema["paths"]
        async with running_app(app_settings(tmp_path, metrics_enabled=False), inference=False) as (
            _,
            client,
        ):
            reply = await client.get("/metrics")
            assert reply.status_code == 404 and "x-process-time" in reply.headers

    asyncio.run(check())


def _client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://tritongate")


def test_metrics_without_a_token_answer_only_loopback_clients(tmp_path: Path) -> None:
    """No TRITONGATE_METRICS_TOKEN: the API port's /metrics is for a scraper on this machine
    (127.0.0.1, ::1) and refused to anyone else; with a token, the token decides."""

    async def check() -> None:
        async with running_app(app_settings(tmp_path), inference=False) as (app, _):
            for remote in ("203.0.113.7", "10.0.0.5", "2001:db8::1", "::ffff:192.0.2.1"):
                async with _client_at(app, remote) as client:
                    refused = await client.get("/metrics")
                    assert refused.status_code == 403, remote
                    assert "TRITONGATE_METRICS_TOKEN" in refused.json()["detail"]
                    assert "tritongate_http_requests_total" not in refused.text
            for local in ("127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"):
                async with _client_at(app, local) as client:
                    served = await client.get("/metrics")
                    assert served.status_code == 200, local
                    assert "tritongate_http_requests_total" in served.text
        settings = app_settings(tmp_path, metrics_token="scrape-secret")
        async with running_app(settings, inference=False) as (app, _):
            remote = _client_at(app, "203.0.113.7")
            assert (await remote.get("/metrics")).status_code == 401
            bearer = {"Authorization": "Bearer scrape-secret"}
            assert (await remote.get("/metrics", headers=bearer)).status_code == 200
            await remote.aclose()

    asyncio.run(check())


def _per_process_requests(directory: Path) -> dict[int, float]:
    """``/prediction`` 200s counted by each worker, from its own metric file."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        alone = directory.parent / f"alone-{pid}"
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        text = generate_latest(registry).decode()
        counts[pid] = value(text, "tritongate_http_requests_total", route="/prediction")
    return counts


def test_two_gunicorn_workers_report_to_one_scrape(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> None:
    ports = TritonPorts.free()
    api_port, metrics_port = ports.http, ports.grpc
    work = tmp_path / "work"
    metrics_dir = work / "prometheus" / str(api_port)
    metrics_dir.mkdir(parents=True)
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # from an earlier run
    env = {
        **os.environ,
        "TRITONGATE_TRITON_URL": triton.grpc_url,
        "TRITONGATE_MODEL_REPOSITORY": str(exported_repository),
        "TRITONGATE_WORK_DIR": str(work),
        "TRITONGATE_INFERENCE_AUTH": "open",
        "TRITONGATE_METRICS_PORT": str(metrics_port),
        "TRITONGATE_METRICS_TOKEN": "scrape-secret",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [
        sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(api_port)
    ]  # fmt: skip
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 90
        while "TritonGate API ready" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert not (metrics_dir / "counter_999999.db").exists(), "stale files are cleaned"

        requests = 120
        # No keep-alive: every request is a new connection, accepted by either worker.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base, limits=limits, timeout=30) as client:
            for n in range(requests):
                reply = client.post("/prediction", json={"text": f"cpu ram {n}"})
                assert reply.status_code == 200, reply.text
            assert client.get("/metrics").status_code == 404, "metrics are on their own port"
        scrape_url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert httpx.get(scrape_url).status_code == 401
        scrape = httpx.get(scrape_url, headers={"Authorization": "Bearer scrape-secret"})
        assert scrape.status_code == 200
        total = value(scrape.text, "tritongate_http_requests_total", route="/prediction")
        assert total == requests

        per_worker = _per_process_requests(metrics_dir)
        assert len([count for count in per_worker.values() if count > 0]) == 2, per_worker
        assert sum(per_worker.values()) == requests
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_path.read_text()
