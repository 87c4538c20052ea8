"""The production server: ``tritongate serve --workers 2`` (prestart, then gunicorn with uvicorn
workers from api/platform/gunicorn_conf.py) against the session's tritonserver. Traffic reaches both
workers (each access line carries its process id), and SIGTERM while requests are in flight lets
them finish with 200 before everything exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.launcher import LocalTriton, TritonPorts

WORKERS = 2
REQUESTS = 60
IN_FLIGHT = 4


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def _wait_for(path: Path, process: subprocess.Popen[bytes], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {text!r} in:\n{path.read_text(errors='replace')}"
        time.sleep(0.1)


def _healthcheck(port: int, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRITONGATE_PORT": str(port)}
    command = [sys.executable, "-m", "api.platform.healthcheck", path]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


class SlowUpload:
    """A ``POST /prediction`` whose body arrives in two parts: between them the request is in
    flight in a worker (headers parsed, the app waiting for the rest of the body)."""

    def __init__(self, port: int, request_id: str) -> None:
        body = json.dumps({"text": f"computer memory ram {request_id}"}).encode()
        self.rest = body[len(body) // 2 :]
        head = (
            "POST /prediction HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-ID: {request_id}\r\n\r\n"
        ).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(head + body[: len(body) // 2])

    def finish(self) -> int:
        """Send the rest; the response's status."""
        self.sock.sendall(self.rest)
        reply = b""
        while b"\r\n" not in reply:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        self.sock.close()
        return int(reply.split(b" ", 2)[1]) if reply else 0


@pytest.fixture
def serve(
    triton: LocalTriton, exported_repository: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = TritonPorts.free().http
    env = {
        **os.environ,
        "TRITONGATE_TRITON_URL": triton.grpc_url,
        "TRITONGATE_MODEL_REPOSITORY": str(exported_repository),
        "TRITONGATE_WORK_DIR": str(tmp_path / "work"),
        "TRITONGATE_INFERENCE_AUTH": "open",
        "TRITONGATE_CACHE_ENABLED": "false",
        "TRITONGATE_LOG_FORMAT": "json",
        "TRITONGATE_ACCESS_LOG": "true",
        "TRITONGATE_PRESTART_TIMEOUT_S": "30",
        "COLUMNS": "200",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [
        sys.executable, "-m", "cli.main", "serve", "--workers", str(WORKERS), "--port", str(port)
    ]  # fmt: skip
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for(log_path, process, "TritonGate API ready", timeout=120)
        yield process, port, log_path
    finally:
        if process.poll() is None:  # a graceful stop takes gunicorn's master and workers along
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_two_workers_serve_and_sigterm_lets_in_flight_requests_finish(
    serve: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log_path = serve
    text = log_path.read_text(errors="replace")
    assert "Triton ready at" in text, "the prestart step waited for the configured Triton"
    assert _healthcheck(port, "/health/live").returncode == 0
    assert _healthcheck(port, "/health/ready").returncode == 0

    # New connection per request: the kernel hands each to whichever worker accepts first.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:
        for n in range(REQUESTS):
            reply = client.post(
                "/prediction",
                json={"text": f"cpu ram disk {n}"},
                headers={"X-Request-ID": f"traffic-{n}"},
            )
            assert reply.status_code == 200, reply.text
    served_by = {
        line["request_id"]: line["pid"]
        for line in _log_lines(log_path)
        if line.get("logger") == "tritongate.access"
        and str(line.get("request_id", "")).startswith("traffic-")
    }
    assert len(served_by) == REQUESTS
    pids = set(served_by.values())
    assert len(pids) == WORKERS, f"requests per worker: {served_by}"
    assert process.pid not in pids

    uploads = [SlowUpload(port, f"in-flight-{n}") for n in range(IN_FLIGHT)]
    time.sleep(1.0)  # the workers have accepted the connections and parsed the headers
    process.send_signal(signal.SIGTERM)
    # Every worker has begun its graceful shutdown (and waits for our connections) before the
    # rest of the bodies is sent.
    deadline = time.monotonic() + 30
    while True:
        lines = _log_lines(log_path)
        stopping = {line["pid"] for line in lines if line.get("message") == "Shutting down"}
        waiting = [line for line in lines if "Waiting for connections to close" in str(line)]
        if len(stopping) >= WORKERS and waiting:
            break
        assert time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.1)
    statuses = [upload.finish() for upload in uploads]
    assert statuses == [200] * IN_FLIGHT, log_path.read_text(errors="replace")
    assert process.wait(timeout=60) == 0, log_path.read_text(errors="replace")

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)
    finished = {
        line["request_id"]
        for line in _log_lines(log_path)
        if line.get("logger") == "tritongate.access" and line.get("status") == 200
    }
    assert {f"in-flight-{n}" for n in range(IN_FLIGHT)} <= finished
    unhealthy = _healthcheck(port, "/health/live")
    assert unhealthy.returncode == 1 and "unreachable" in unhealthy.stderr


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc; the gunicorn workers of its master)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_a_killed_worker_is_replaced_and_the_other_keeps_serving(
    serve: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log_path = serve
    (master,) = _children(process.pid)  # `tritongate serve` runs gunicorn's master as a child
    workers = _children(master)
    assert len(workers) == WORKERS, workers
    victim = min(workers)
    outcomes: list[int | str] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:

        def call(n: int) -> None:
            try:
                reply = client.post("/prediction", json={"text": f"gpu driver {n}"})
                outcomes.append(reply.status_code)
            except httpx.TransportError as error:  # only a request the killed worker held
                outcomes.append(type(error).__name__)

        for n in range(20):
            call(n)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        replaced_in = None
        n = 20
        while time.monotonic() - killed < 30:
            call(n)
            n += 1
            current = _children(master)
            if replaced_in is None and len(current) == WORKERS and victim not in current:
                replaced_in = time.monotonic() - killed
            if replaced_in is not None and n >= 80:
                break
    after = _children(master)
    failures = [outcome for outcome in outcomes if outcome != 200]
    replaced = "never" if replaced_in is None else f"in {replaced_in:.2f} s"
    print(
        f"\nworker {victim} killed: replaced {replaced} by {after - workers}; "
        f"{len(outcomes)} requests, failures {failures}"
    )
    assert replaced_in is not None, log_path.read_text(errors="replace")[-3000:]
    assert len(after) == WORKERS and victim not in after
    assert len(failures) <= 1, "only a request in flight on the killed worker may fail"
    assert all(outcome == 200 for outcome in outcomes[-30:])
    assert process.poll() is None and _children(process.pid) == {master}, "the master stays"
