"""deploy/k8s/, checked offline: the resources the deployment needs, images that are Dockerfile
targets, settings that are real, ports and probes that agree with the app's route table and
Triton, storage, autoscaling on the metric prometheus-adapter provides, disruption budgets, the
reverse proxy sidecar (the Service's only target, its ConfigMap built from deploy/nginx/nginx.conf,
the API trusting it alone); then ``kubectl kustomize`` and the client dry run when kubectl can do
them here."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

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

K8S = PROJECT_ROOT / "deploy" / "k8s"
NGINX = PROJECT_ROOT / "deploy" / "nginx"
PROXY_BASE = "../nginx"  # the kustomization generating the proxy's ConfigMap
VERSION = re.search(r'^version = "([^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text(), re.M)
TRITON_PROBES = {"/v2/health/ready", "/v2/health/live"}  # checked on a real tritonserver too


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _resources() -> list[dict[str, Any]]:
    documents = [
        doc
        for name in _kustomization()["resources"]
        if name != PROXY_BASE
        for doc in yaml_documents(K8S / name)
    ]
    return documents + yaml_documents(K8S / "jobs" / "export-models.yaml")


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        doc
        for doc in _resources()
        if doc["kind"] == kind
        and doc["metadata"].get("name", doc["metadata"].get("generateName")) == name
    ]
    return found


def _pod(kind: str, name: str) -> dict[str, Any]:
    return _one(kind, name)["spec"]["template"]["spec"]


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return found


def _settings() -> dict[str, str]:
    return {
        key: str(value) for key, value in _one("ConfigMap", "tritongate-settings")["data"].items()
    }


def _secret_keys() -> set[str]:
    lines = (K8S / "secrets.env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}


def test_the_kustomization_lists_every_manifest_and_nothing_else() -> None:
    listed = set(_kustomization()["resources"])
    present = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present | {PROXY_BASE}


def test_every_needed_resource_is_there() -> None:
    kinds = Counter(doc["kind"] for doc in _resources())
    assert kinds == {
        "Namespace": 1,
        "ConfigMap": 1,
        "PersistentVolumeClaim": 2,
        "Deployment": 2,
        "Service": 2,
        "HorizontalPodAutoscaler": 2,
        "PodDisruptionBudget": 2,
        "NetworkPolicy": 1,
        "Job": 1,
    }


def test_images_are_the_dockerfile_targets_at_the_project_version() -> None:
    assert VERSION
    stages = parse_dockerfile(PROJECT_ROOT / "Dockerfile.gpu").stages
    for doc in _resources():
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            if container["name"] == "proxy":  # the official nginx image, as in compose
                compose = yaml_documents(PROJECT_ROOT / "deploy" / "compose.yaml")[0]
                assert container["image"] == compose["services"]["proxy"]["image"]
                continue
            match = re.fullmatch(r"tritongate-(\w+):(.+)", container["image"])
            assert match and match[1] in stages and match[2] == VERSION[1], container["image"]


def test_every_tritongate_variable_is_a_setting() -> None:
    known = setting_names()
    names = set(_settings()) | _secret_keys()
    for doc in _resources():
        if doc["kind"] in {"Deployment", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                names |= {item["name"] for item in container.get("env", [])}
    names = {name for name in names if name.startswith("TRITONGATE_")}
    assert names - known == set()
    assert {"TRITONGATE_SECRET_KEY", "TRITONGATE_DATABASE_URL", "TRITONGATE_REDIS_URL"} <= (
        _secret_keys()
    ), "secrets live in the Secret"
    assert not {"TRITONGATE_SECRET_KEY", "TRITONGATE_DATABASE_URL"} & set(_settings())


def test_the_api_takes_its_settings_from_the_configmap_and_the_generated_secret() -> None:
    api = _container(_pod("Deployment", "tritongate-api"), "api")
    sources = {next(iter(source)): next(iter(source.values()))["name"] for source in api["envFrom"]}
    assert sources["configMapRef"] == "tritongate-settings"
    generated = {secret["name"] for secret in _kustomization()["secretGenerator"]}
    assert sources["secretRef"] in generated


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def test_api_ports_match_its_settings_and_its_service() -> None:
    settings = _settings()
    api = _container(_pod("Deployment", "tritongate-api"), "api")
    ports = _ports(api)
    assert ports == {"api": int(settings["TRITONGATE_PORT"]), "metrics": 9100}
    assert int(settings["TRITONGATE_METRICS_PORT"]) == ports["metrics"]


def test_the_api_finds_triton_at_its_service_grpc_port() -> None:
    host, _, port = _settings()["TRITONGATE_TRITON_URL"].partition(":")
    service = _one("Service", host)
    (grpc,) = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc["port"] == int(port)
    triton = _container(_pod("Deployment", "tritongate-triton"), "triton")
    assert _ports(triton)[grpc["targetPort"]] == 8001
    command = parse_dockerfile(PROJECT_ROOT / "Dockerfile.gpu").stage("triton").all("CMD")
    assert "--grpc-port=8001" in command[0].words() and "--http-port=8000" in command[0].words()


def test_services_select_their_deployments() -> None:
    for name in ("tritongate-api", "tritongate-triton"):
        labels = _one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selector = _one("Service", name)["spec"]["selector"]
        assert selector.items() <= labels.items()
        assert _one("Deployment", name)["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _probe_paths(container: dict[str, Any]) -> dict[str, str]:
    return {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }


def test_api_probes_ask_real_routes(tmp_path: Path) -> None:
    routes = get_routes(tmp_path)
    api = _container(_pod("Deployment", "tritongate-api"), "api")
    probes = _probe_paths(api)
    assert probes["readinessProbe"] == "/health/ready"
    assert probes["livenessProbe"] == "/health/live"
    assert set(probes.values()) <= routes
    for kind in probes:
        assert api[kind]["httpGet"]["port"] == "api", "the API's own port, not the proxy's"


def test_triton_probes_ask_its_health_endpoints() -> None:
    triton = _container(_pod("Deployment", "tritongate-triton"), "triton")
    probes = _probe_paths(triton)
    assert probes["readinessProbe"] == "/v2/health/ready"
    assert probes["livenessProbe"] == "/v2/health/live"
    assert set(probes.values()) <= TRITON_PROBES
    assert {triton[kind]["httpGet"]["port"] for kind in probes} == {"http"}
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, (
        "TensorRT builds take time"
    )


def test_triton_has_a_gpu_shared_memory_and_the_engine_cache() -> None:
    pod = _pod("Deployment", "tritongate-triton")
    triton = _container(pod, "triton")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {mount["mountPath"]: mount for mount in triton["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    engine = volumes[mounts["/engine_cache"]["name"]]["persistentVolumeClaim"]["claimName"]
    assert engine == "tritongate-engine-cache"
    assert mounts["/models"]["readOnly"] is True


def test_the_model_repository_is_one_shared_volume() -> None:
    claims = {
        doc["metadata"]["name"]: doc
        for doc in _resources()
        if doc["kind"] == "PersistentVolumeClaim"
    }
    assert claims["tritongate-models"]["spec"]["accessModes"] == ["ReadWriteMany"]
    for kind, name in (
        ("Deployment", "tritongate-api"),
        ("Deployment", "tritongate-triton"),
        ("Job", "tritongate-export-"),
    ):
        pod = _pod(kind, name)
        used = {
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert "tritongate-models" in used and used <= set(claims), name
        if kind == "Deployment":
            (wait,) = pod["initContainers"]
            assert "model.onnx" in " ".join(wait["command"]), "wait for the export job"
    export = _container(_pod("Job", "tritongate-export-"), "export")
    env = {item["name"]: item["value"] for item in export["env"]}
    assert env["TRITONGATE_MODEL_REPOSITORY"] == "/models"
    assert _settings()["TRITONGATE_MODEL_REPOSITORY"] == "/models"


def test_pods_run_as_the_images_users() -> None:
    dockerfile = parse_dockerfile(PROJECT_ROOT / "Dockerfile.gpu")
    for kind, name, stage in (
        ("Deployment", "tritongate-api", "api"),
        ("Deployment", "tritongate-triton", "triton"),
        ("Job", "tritongate-export-", "export"),
    ):
        context = _pod(kind, name)["securityContext"]
        user = dockerfile.stage(stage).all("USER")[-1].arguments.split(":")[0]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == int(user), name


def test_the_api_stops_gracefully_within_its_grace_period() -> None:
    pod = _pod("Deployment", "tritongate-api")
    pre_stop = _container(pod, "api")["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + STOP_TIMEOUT_S


def test_autoscaling_targets_the_deployments_on_cpu_and_triton_queue_time() -> None:
    api = _one("HorizontalPodAutoscaler", "tritongate-api")["spec"]
    assert api["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tritongate-api",
    }
    (cpu,) = api["metrics"]
    assert cpu["resource"]["name"] == "cpu" and cpu["resource"]["target"]["type"] == "Utilization"
    assert _container(_pod("Deployment", "tritongate-api"), "api")["resources"]["requests"]["cpu"]
    triton = _one("HorizontalPodAutoscaler", "tritongate-triton")["spec"]
    assert triton["scaleTargetRef"]["name"] == "tritongate-triton"
    (queue,) = triton["metrics"]
    assert queue["type"] == "Pods"
    adapter = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == queue["pods"]["metric"]["name"]
    assert "nv_inference_queue_duration_us" in rule["seriesQuery"]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]
    assert float(queue["pods"]["target"]["averageValue"]) > 0
    assert 1 <= api["minReplicas"] < api["maxReplicas"] and triton["minReplicas"] >= 1


def test_disruption_budgets_cover_both_deployments() -> None:
    for name in ("tritongate-api", "tritongate-triton"):
        budget = _one("PodDisruptionBudget", name)["spec"]
        labels = _one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["selector"]["matchLabels"].items() <= labels.items()
        assert "minAvailable" in budget or "maxUnavailable" in budget
    api_budget = _one("PodDisruptionBudget", "tritongate-api")["spec"]["minAvailable"]
    assert api_budget < _one("HorizontalPodAutoscaler", "tritongate-api")["spec"]["minReplicas"]


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    return kubectl


def _built(tmp_path: Path) -> str:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    shutil.copytree(NGINX, tmp_path / "nginx")
    shutil.copy(copy / "secrets.env.example", copy / "secrets.env")
    result = subprocess.run(
        [_kubectl(), "kustomize", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_kustomize_builds_the_namespaced_set(tmp_path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(_built(tmp_path)) if doc]
    assert all(
        doc["metadata"].get("namespace") == "tritongate"
        for doc in documents
        if doc["kind"] != "Namespace"
    )
    (secret,) = [doc for doc in documents if doc["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("tritongate-secrets-"), "content-hashed name"
    (api,) = [
        doc
        for doc in documents
        if doc["metadata"]["name"] == "tritongate-api" and doc["kind"] == "Deployment"
    ]
    refs = [
        s["secretRef"]["name"]
        for s in api["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        if "secretRef" in s
    ]
    assert refs == [secret["metadata"]["name"]]
    (proxy_config,) = [
        doc
        for doc in documents
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("tritongate-proxy-")
    ]
    assert proxy_config["data"] == {"nginx.conf": (NGINX / "nginx.conf").read_text()}
    volumes = api["spec"]["template"]["spec"]["volumes"]
    assert proxy_config["metadata"]["name"] in {v.get("configMap", {}).get("name") for v in volumes}


def test_kubectl_client_dry_run(tmp_path: Path) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(_built(tmp_path))
    result = subprocess.run(
        [_kubectl(), "apply", "--dry-run=client", "--validate=false", "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and re.search(
        r"connection refused|couldn't get current server", result.stderr
    ):
        pytest.skip(
            "kubectl's client dry run still asks an API server for its resource types; none here"
        )
    assert result.returncode == 0, result.stderr


def _nginx_http() -> Any:
    return parse_nginx(NGINX / "nginx.conf").one("http")


def test_the_service_sends_traffic_to_the_proxy_only() -> None:
    pod = _pod("Deployment", "tritongate-api")
    proxy_ports = _ports(_container(pod, "proxy"))
    api_ports = _ports(_container(pod, "api"))
    service = {
        port["name"]: port["targetPort"]
        for port in _one("Service", "tritongate-api")["spec"]["ports"]
    }
    assert service == {"http": "http", "metrics": "metrics"}
    assert "http" in proxy_ports and "http" not in api_ports, "port names are unique in a pod"
    assert "metrics" in api_ports
    listens = [server.one("listen").args[0] for server in _nginx_http().all("server")]
    assert [str(proxy_ports["http"]), str(proxy_ports["proxy-health"])] == listens


def test_the_proxy_reaches_the_api_in_its_pod_and_is_the_only_trusted_forwarder() -> None:
    pod = _pod("Deployment", "tritongate-api")
    upstream_host, _, upstream_port = (
        _nginx_http().child("upstream", "tritongate_api").one("server").args[0].partition(":")
    )
    (alias,) = [a for a in pod["hostAliases"] if upstream_host in a["hostnames"]]
    assert alias["ip"] == "127.0.0.1"
    assert int(upstream_port) == int(_settings()["TRITONGATE_PORT"])
    env = {item["name"]: item["value"] for item in _container(pod, "api")["env"]}
    assert env["FORWARDED_ALLOW_IPS"] == alias["ip"]


def test_the_proxy_config_is_a_configmap_generated_from_the_nginx_file() -> None:
    base = yaml.safe_load((NGINX / "kustomization.yaml").read_text())
    (generator,) = base["configMapGenerator"]
    assert generator["files"] == ["nginx.conf"] and (NGINX / "nginx.conf").is_file()
    assert PROXY_BASE in _kustomization()["resources"]
    assert (K8S / PROXY_BASE).resolve() == NGINX
    pod = _pod("Deployment", "tritongate-api")
    proxy = _container(pod, "proxy")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (config,) = [m for m in proxy["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert volumes[config["name"]]["configMap"]["name"] == generator["name"]
    assert config["readOnly"] is True
    assert proxy["command"] == ["nginx", "-c", f"{config['mountPath']}/nginx.conf"]


def test_the_proxy_runs_read_only_and_unprivileged_with_its_own_probes() -> None:
    pod = _pod("Deployment", "tritongate-api")
    proxy = _container(pod, "proxy")
    context = proxy["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == [
        "ALL"
    ]
    mounts = {mount["mountPath"]: mount["name"] for mount in proxy["volumeMounts"]}
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]]
    for kind in ("readinessProbe", "livenessProbe"):
        assert proxy[kind]["httpGet"] == {"path": "/healthz", "port": "proxy-health"}, kind
    assert proxy["resources"]["limits"]["memory"]


def test_the_proxy_stops_gracefully_within_the_pod_grace_period() -> None:
    pod = _pod("Deployment", "tritongate-api")
    script = _container(pod, "proxy")["lifecycle"]["preStop"]["exec"]["command"][-1]
    match = re.fullmatch(r"sleep (\d+); nginx -c (\S+) -s quit; sleep (\d+)", script)
    assert match, script
    shutdown = nginx_seconds(
        parse_nginx(NGINX / "nginx.conf").one("worker_shutdown_timeout").args[0]
    )
    assert int(match[3]) > shutdown, "the hook outlasts the graceful stop (nginx's exit ends it)"
    assert pod["terminationGracePeriodSeconds"] > int(match[1]) + shutdown


def test_other_pods_reach_the_proxy_and_metrics_not_the_api_port() -> None:
    policy = _one("NetworkPolicy", "tritongate-api")["spec"]
    labels = _one("Deployment", "tritongate-api")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert {port["port"] for port in rule["ports"]} == {"http", "metrics"}
