"""serving.launcher: the assembled server tree, its command line and environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from serving.launcher import (
    BACKEND_SOURCE,
    LocalTriton,
    TritonLaunchError,
    TritonPorts,
    assemble_server,
    server_environment,
)


def test_assembled_server_has_stub_and_our_onnxruntime_backend(tmp_path: Path) -> None:
    server = assemble_server(tmp_path)
    assert os.access(server / "bin" / "tritonserver", os.X_OK)
    assert os.access(server / "backends" / "python" / "triton_python_backend_stub", os.X_OK)
    assert (server / "backends" / "python" / "libtriton_python.so").exists()
    backend = server / "backends" / "onnxruntime" / "model.py"
    assert backend.read_text() == BACKEND_SOURCE.read_text()
    assert not (server / "python_backend_stubs").exists()


def test_free_ports_are_distinct() -> None:
    ports = TritonPorts.free()
    assert len({ports.http, ports.grpc, ports.metrics}) == 3


def test_command_selects_config_variant_ports_and_address(tmp_path: Path) -> None:
    ports = TritonPorts(http=18000, grpc=18001, metrics=18002)
    triton = LocalTriton(tmp_path / "repo", tmp_path / "work", ports=ports, config_name="cpu")
    command = triton.command(tmp_path / "server")
    assert command[0] == str(tmp_path / "server" / "bin" / "tritonserver")
    assert f"--model-repository={(tmp_path / 'repo').resolve()}" in command
    assert "--model-config-name=cpu" in command
    assert {"--http-port=18000", "--grpc-port=18001", "--metrics-port=18002"} <= set(command)
    assert "--grpc-address=127.0.0.1" in command
    assert triton.grpc_url == "127.0.0.1:18001"
    default = LocalTriton(tmp_path / "repo", tmp_path / "work", ports=ports, config_name=None)
    assert not any(arg.startswith("--model-config-name") for arg in default.command(tmp_path))


def test_environment_puts_this_interpreter_first_on_path() -> None:
    env = server_environment()
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "nvidia_pytriton.libs" in env["LD_LIBRARY_PATH"].split(os.pathsep)[0]


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TritonLaunchError, match="does not exist"):
        LocalTriton(tmp_path / "nope", tmp_path / "work").start()


def test_urls_before_start_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(TritonLaunchError, match="not been started"):
        _ = LocalTriton(tmp_path, tmp_path / "work").grpc_url
