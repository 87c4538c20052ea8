"""The ``tritongate`` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.client import TritonGrpcClient
from serving.launcher import TritonPorts
from tests.integration.test_triton_server import _stub_processes
from tests.stack import copy_committed_configs

TRITONGATE = str(Path(sys.executable).parent / "tritongate")


def _env(work_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TRITONGATE_WORK_DIR"] = str(work_dir)
    env["COLUMNS"] = "200"  # keep rich from wrapping the lines the tests read
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    """Read the process's stderr until a line matches; everything read so far."""
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if ready:
            line = process.stderr.readline()
            seen += line
            if re.search(pattern, line):
                return seen
        if process.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r}; output so far:\n{seen}")


def test_triton_command_serves_until_interrupted(exported_repository: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [TRITONGATE, "triton", "--repository", str(exported_repository)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=_env(tmp_path),
    )
    try:
        output = _read_until(process, r"tritonserver ready", timeout=120)
        grpc_url = re.search(r"gRPC (127\.0\.0\.1:\d+)", output)
        assert grpc_url, output

        async def infer() -> int:
            client = TritonGrpcClient(grpc_url.group(1))
            try:
                text = np.array([[b"computer cpu memory ram"]], dtype=object)
                result = await client.infer("newsgroups", {"text": text})
                return int(result.outputs["label"][0, 0])
            finally:
                await client.close()

        assert 0 <= asyncio.run(infer()) < 4
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _stub_processes(str(tmp_path / "triton")) == []


def test_triton_command_refuses_an_unexported_repository(tmp_path: Path) -> None:
    repository = copy_committed_configs(tmp_path / "repo")
    result = subprocess.run(
        [TRITONGATE, "triton", "--repository", str(repository)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert result.returncode == 1
    assert "has no exported model" in result.stderr
    assert "tritongate export all" in result.stderr


def test_export_command_writes_then_skips_existing(photos: list[Path], tmp_path: Path) -> None:
    repository = copy_committed_configs(tmp_path / "repo", models=("yolos",))
    command = [
        TRITONGATE,
        "export",
        "yolos",
        "--repository",
        str(repository),
        "--yolos-weights",
        "random-init",
        "--tiny",
        "--skip-existing",
    ]
    env = _env(tmp_path)
    env["TRITONGATE_IMAGES_DIR"] = str(photos[0].parent)
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert (repository / "yolos" / "1" / "model.onnx").exists()
    assert "yolos written to" in first.stderr
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "already in" in second.stderr and "skipping" in second.stderr
    # An export from before an interface change (here: the old float32 pixel_values input) is
    # not skipped: Triton would refuse it, or every request would fail.
    _write_old_interface_graph(repository / "yolos" / "1" / "model.onnx")
    third = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "does not have the current interface" in third.stderr
    assert "yolos written to" in third.stderr


def _write_old_interface_graph(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    pixel_values = helper.make_tensor_value_info(
        "pixel_values", TensorProto.FLOAT, ["batch", 3, 480, 640]
    )
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 100, 92]),
        helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, ["batch", 100, 4]),
    ]
    nodes = [helper.make_node("Identity", ["pixel_values"], [o.name]) for o in outputs]
    onnx.save(helper.make_model(helper.make_graph(nodes, "old", [pixel_values], outputs)), path)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_triton_and_the_api_until_interrupted(
    exported_repository: Path, tmp_path: Path, workers: int
) -> None:
    port = TritonPorts.free().http
    process = subprocess.Popen(
        [TRITONGATE, "serve", "--repository", str(exported_repository), "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={
            **_env(tmp_path),
            "TRITONGATE_WORKERS": str(workers),
            "TRITONGATE_INFERENCE_AUTH": "open",  # as `make run` does
        },
        cwd=tmp_path,  # nothing may come from the checkout's own model_repository
    )
    try:
        _read_until(process, r"TritonGate API ready", timeout=180)
        base = f"http://127.0.0.1:{port}"
        reply = httpx.post(f"{base}/prediction", json={"text": "computer cpu memory ram"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_version"] == "1"
        assert httpx.get(f"{base}/health/ready").status_code == 200
        # The database was migrated before the workers started: accounts work at once.
        registered = httpx.post(
            f"{base}/register", json={"email": "serve@example.com", "password": "long enough"}
        )
        assert registered.status_code == 201, registered.text
        assert (tmp_path / "tritongate.db").is_file()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _stub_processes(str(tmp_path / "triton")) == []
    assert _stub_processes(f"--port={port}") == [] and _stub_processes(f":{port}") == []
