"""deploy/compose.yaml, checked without a Docker engine: the services, their images, GPU
reservation, health checks, volumes, and settings, ports and addresses that agree with the app,
Dockerfile.gpu, the Prometheus configuration, the Grafana provisioning and the reverse proxy
(deploy/nginx/nginx.conf: the only published service, the API's only trusted forwarder)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from api.config import Settings
from api.platform.timeouts import STOP_TIMEOUT_S
from tests.helpers.deploy_files import (
    get_routes,
    nginx_seconds,
    parse_dockerfile,
    parse_nginx,
    setting_names,
    yaml_documents,
)
from tests.stack import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
SERVICES = {"models", "triton", "proxy", "api", "postgres", "redis", "prometheus", "grafana"}
INTERPOLATION = re.compile(r"\$\{(\w+)(:?[-?][^}]*)?\}")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|REDISCLI_AUTH|_TOKEN$")
VERSION = re.search(r'^version = "([^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text(), re.M)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (document,) = yaml_documents(COMPOSE)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _plain(value: str) -> str:
    """A compose value with its ``${VAR...}`` interpolations replaced by ``VAR``."""
    return INTERPOLATION.sub(lambda match: match.group(1), value)


def _default(value: str) -> str:
    """A compose value with each ``${VAR:-default}`` replaced by its default."""
    return INTERPOLATION.sub(lambda match: (match.group(2) or ":-")[2:], str(value))


def test_every_service_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_images_are_pinned_and_built_ones_are_dockerfile_targets(
    services: dict[str, dict[str, Any]],
) -> None:
    assert VERSION
    stages = parse_dockerfile(PROJECT_ROOT / "Dockerfile.gpu").stages
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag != "latest" and re.search(r"\d", tag), f"{name}: {image}"
        if "build" in service:
            build = service["build"]
            assert (COMPOSE.parent / build["context"]).resolve() == PROJECT_ROOT
            assert (PROJECT_ROOT / build["dockerfile"]).is_file()
            assert build["target"] in stages, f"{name}: no stage {build['target']}"
            assert image == f"tritongate-{build['target']}:{VERSION[1]}"


def test_triton_gets_a_gpu_and_shared_memory(services: dict[str, dict[str, Any]]) -> None:
    triton = services["triton"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert re.fullmatch(r"\d+[gm]b", triton["shm_size"])
    assert triton["ulimits"]["memlock"] == -1


def test_long_running_services_have_health_checks_and_restart(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name == "models":
            assert service["restart"] == "no", "the export job runs once"
            continue
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name


def test_start_order_follows_readiness(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]["depends_on"]
    assert api["triton"]["condition"] == "service_healthy"
    assert api["postgres"]["condition"] == "service_healthy"
    assert api["redis"]["condition"] == "service_healthy"
    assert api["models"]["condition"] == "service_completed_successfully"
    assert services["triton"]["depends_on"]["models"]["condition"] == (
        "service_completed_successfully"
    )


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service.get("environment", {}).items()}


def test_settings_are_real_and_secrets_come_from_the_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    known = setting_names()
    for name, service in services.items():
        for key, value in _environment(service).items():
            if key.startswith("TRITONGATE_"):
                assert key in known, f"{name}: {key} is not a setting"
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{name}: {key} is not required"
            credentials = urlsplit(_plain(value)).password if "://" in value else None
            if credentials:
                assert INTERPOLATION.search(value), f"{name}: a literal password in {key}"


def test_the_api_reaches_its_dependencies_where_they_listen(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["api"])
    triton_host, _, triton_port = env["TRITONGATE_TRITON_URL"].partition(":")
    assert triton_host in services
    triton_command = parse_dockerfile(PROJECT_ROOT / "Dockerfile.gpu").stage("triton").all("CMD")
    assert f"--grpc-port={triton_port}" in triton_command[0].words()
    database = urlsplit(_plain(env["TRITONGATE_DATABASE_URL"]))
    postgres = _environment(services["postgres"])
    assert database.scheme == "postgresql+asyncpg" and database.hostname == "postgres"
    assert database.username == postgres["POSTGRES_USER"]
    assert database.path == f"/{postgres['POSTGRES_DB']}"
    assert database.password == "POSTGRES_PASSWORD"
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    redis = urlsplit(_plain(env["TRITONGATE_REDIS_URL"]))
    assert redis.hostname == "redis" and redis.port == 6379 and redis.password == "REDIS_PASSWORD"
    assert _environment(services["redis"])["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")


def test_api_settings_parse_and_ports_agree(services: dict[str, dict[str, Any]]) -> None:
    image_env = parse_dockerfile(PROJECT_ROOT / "Dockerfile.gpu").stage("api").env()
    compose_env = {key: _default(value) for key, value in _environment(services["api"]).items()}
    env = {**image_env, **compose_env}
    values = {key[len("TRITONGATE_") :].lower(): value for key, value in env.items()}
    values["secret_key"] = "x" * 48
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    assert settings.workers >= 2 and settings.host == "0.0.0.0"
    assert "ports" not in services["api"], "the API is reached through the proxy"
    http = parse_nginx(NGINX_CONF).one("http")
    (upstream,) = http.child("upstream", "tritongate_api").one("server").args
    assert upstream == f"api:{settings.port}" and "api" in services
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "compose.yml").read_text())
    targets = {
        job["job_name"]: target
        for job in prometheus["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {"tritongate-api": f"api:{settings.metrics_port}", "triton": "triton:8002"}
    assert services["api"]["stop_grace_period"] == "45s" and STOP_TIMEOUT_S < 45


def test_the_api_health_check_asks_a_real_route(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    routes = get_routes(tmp_path)
    assert {"/health/live", "/health/ready"} <= routes
    test = services["api"]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "api.platform.healthcheck"]
    assert test[4] in routes
    assert "/v2/health/ready" in " ".join(services["triton"]["healthcheck"]["test"])


def test_volumes_are_declared_and_bind_mounts_exist(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source, _target, *mode = _default(mount).split(":")
            if source.startswith("."):
                if source != "./data":  # the optional offline inputs of the export job
                    assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
            else:
                used.add(source)
            if source == "models":
                assert mode == ([] if name == "models" else ["ro"]), f"{name} mounts models {mode}"
    assert used == declared


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    mounts = dict(mount.split(":")[:2] for mount in services["grafana"]["volumes"])
    dashboard_target = Path(mounts["./grafana/tritongate-dashboard.json"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tritongate.yml").read_text())[
        "providers"
    ]
    assert Path(provider["options"]["path"]) == dashboard_target.parent
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert urlsplit(source["url"]).hostname == "prometheus"
    assert urlsplit(source["url"]).port == 9090


def test_env_example_names_every_required_variable() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = {
        line.split("=", 1)[0].lstrip("# ")
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if "=" in line
    }
    assert required and required <= example


def _nginx_listens() -> list[str]:
    return [
        server.one("listen").args[0] for server in parse_nginx(NGINX_CONF).one("http").all("server")
    ]


def test_only_the_proxy_is_published_beyond_the_host(services: dict[str, dict[str, Any]]) -> None:
    public = {}
    for name, service in services.items():
        for mapping in service.get("ports", []):
            parts = _default(mapping).split(":")
            if len(parts) == 2:  # no host address: every interface
                public[name] = parts
            else:
                assert parts[0] == "127.0.0.1", f"{name}: {mapping}"
    assert set(public) == {"proxy"}
    published, container_port = public["proxy"]
    api_listen, health_listen = _nginx_listens()
    assert container_port == api_listen and published == "8000"
    assert health_listen in " ".join(services["proxy"]["healthcheck"]["test"])


def test_the_proxy_runs_the_mounted_nginx_conf_read_only(
    services: dict[str, dict[str, Any]],
) -> None:
    proxy = services["proxy"]
    image, _, tag = proxy["image"].partition(":")
    assert image == "nginx" and re.fullmatch(r"\d+\.\d+\.\d+-alpine", tag), "official, pinned"
    mounts = {mount.split(":")[0]: mount.split(":")[1:] for mount in proxy["volumes"]}
    target, mode = mounts["./nginx/nginx.conf"]
    assert mode == "ro" and (COMPOSE.parent / "nginx" / "nginx.conf").resolve() == NGINX_CONF
    assert proxy["entrypoint"] == ["nginx", "-c", target]
    assert proxy["read_only"] is True and mounts["proxy-tmp"] == ["/tmp"]
    assert not proxy["user"].startswith("0"), "not root"


def test_the_api_trusts_forwarded_headers_from_the_proxy_only(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    edge = compose["networks"]["edge"]
    (pool,) = edge["ipam"]["config"]
    subnet = ipaddress.ip_network(pool["subnet"])
    members = {name for name, service in services.items() if "edge" in service.get("networks", {})}
    assert members == {"proxy", "api"}, "nobody else can send from the trusted address"
    assert set(services["proxy"]["networks"]) == {"edge"}
    proxy_address = ipaddress.ip_address(services["proxy"]["networks"]["edge"]["ipv4_address"])
    api_address = ipaddress.ip_address(services["api"]["networks"]["edge"]["ipv4_address"])
    assert proxy_address in subnet and api_address in subnet and proxy_address != api_address
    # Both fixed: a dynamic address for the API could be the one the proxy needs, and the proxy
    # resolves `api` once, at start.
    assert _environment(services["api"])["FORWARDED_ALLOW_IPS"] == str(proxy_address)
    assert "default" in services["api"]["networks"], "Prometheus, Triton, PostgreSQL, Redis"


def test_the_proxy_stops_gracefully_within_its_grace_period(
    services: dict[str, dict[str, Any]],
) -> None:
    proxy = services["proxy"]
    assert proxy["stop_signal"] == "SIGQUIT", "nginx's graceful stop; SIGTERM drops requests"
    shutdown = nginx_seconds(parse_nginx(NGINX_CONF).one("worker_shutdown_timeout").args[0])
    assert nginx_seconds(proxy["stop_grace_period"]) > shutdown
    assert proxy["depends_on"]["api"]["condition"] == "service_started"
