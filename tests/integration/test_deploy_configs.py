"""deploy/: the Grafana dashboard parses and asks only for metrics that a real scrape of the app
and of a real tritonserver contains; the Prometheus config parses and scrapes both."""

from __future__ import annotations

import asyncio
import io
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from serving.launcher import LocalTriton
from tests.integration.api_client import app_settings, running_app
from tests.integration.prometheus_text import family_names
from tests.stack import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "tritongate-dashboard.json"
PROMETHEUS_CONFIG = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"
METRIC_NAME = re.compile(r"\b(?:tritongate|nv)_[a-z0-9_]+\b")


def _expressions(panels: list[dict[str, Any]]) -> list[str]:
    found = []
    for panel in panels:
        found.extend(target["expr"] for target in panel.get("targets", []))
        found.extend(_expressions(panel.get("panels", [])))
    return found


def _api_scrape(triton: LocalTriton, repository: Path, photo: bytes) -> str:
    async def scrape() -> str:
        settings = app_settings(repository, triton_url=triton.grpc_url, cache_enabled=True)
        async with running_app(settings) as (_, client):
            await client.post("/prediction", json={"text": "computer cpu memory ram"})
            await client.post("/prediction", json={"text": "computer cpu memory ram"})
            await client.post("/object-detection", files={"image": ("a.jpg", photo, None)})
            return (await client.get("/metrics")).text

    return asyncio.run(scrape())


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_dashboard_uses_metrics_that_exist(
    triton: LocalTriton, exported_repository: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = _expressions(dashboard["panels"])
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("latency quantiles", "throughput", "batch size", "cache hit rate", "triton"):
        assert topic in titles, topic
    wanted = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    assert any(name.startswith("nv_inference_") for name in wanted)

    api = family_names(_api_scrape(triton, exported_repository, _jpeg()))
    with urllib.request.urlopen(triton.metrics_url, timeout=10) as reply:
        server = family_names(reply.read().decode())
    missing = {name for name in wanted if name not in (server if name.startswith("nv_") else api)}
    assert not missing, f"the dashboard asks for metrics nobody exports: {sorted(missing)}"


def test_the_prometheus_config_scrapes_the_api_and_triton() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"tritongate-api", "triton"}
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [target for group in job["static_configs"] for target in group["targets"]]
        assert targets and all(re.fullmatch(r"[\w.\-]+:\d+", target) for target in targets)
