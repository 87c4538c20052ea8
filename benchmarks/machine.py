"""What a report was measured on: CPU, cores, memory, GPU, software versions, the commit.

Everything is read from the local system without side effects: ``/proc`` (CPU model, memory,
load), ``nvidia-smi`` when it is on ``PATH`` (GPU names, memory, driver), package metadata for
versions and ``git`` (read-only: commit, branch, whether the working tree has changes). A field
that cannot be read is ``None``, never a guess.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Final

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent

# Packages whose versions change the figures: the HTTP stack, Triton's client, the runtimes and
# the book baseline's libraries.
PACKAGES: Final = (
    "tritongate",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "gunicorn",
    "pydantic",
    "tritonclient",
    "grpcio",
    "nvidia-pytriton",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "pillow",
    "scikit-learn",
    "torch",
    "transformers",
)


def _run(command: list[str], cwd: Path = PROJECT_ROOT, timeout: float = 10.0) -> str | None:
    """A command's stripped stdout, or ``None`` if it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        completed = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask), which a container may restrict."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    """Total memory in GiB from ``/proc/meminfo``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (how busy the machine was)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as ``nvidia-smi`` reports them; empty without ``nvidia-smi`` or a GPU."""
    fields = ("name", "memory.total", "driver_version")
    output = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"])
    if not output:
        return []
    found = []
    for line in output.splitlines():
        values = [value.strip() for value in line.split(",")]
        if len(values) == len(fields):
            found.append(dict(zip(("name", "memory", "driver"), values, strict=True)))
    return found


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; packages that are not installed are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Commit (full and short), branch and whether tracked files have uncommitted changes."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd=root)
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    return {
        "commit": commit,
        "short_commit": commit[:10] if commit else None,
        "branch": _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root),
        "dirty": None if status is None else bool(status),
    }


def slug(text: str) -> str:
    """``text`` reduced to lowercase letters, digits and single dashes (for directory names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def machine_name() -> str:
    """A short name for this machine in result directories: host name and usable cores."""
    return f"{slug(socket.gethostname())}-{usable_cores()}cpu"


def machine_info() -> dict[str, Any]:
    """Everything above, JSON-ready."""
    return {
        "hostname": socket.gethostname(),
        "name": machine_name(),
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_state(),
        "load_average_at_start": load_average(),
    }


def describe(info: dict[str, Any]) -> str:
    """One line: CPU model, cores, memory, GPUs."""
    gpu_list = info.get("gpus") or []
    gpu_text = ", ".join(gpu["name"] for gpu in gpu_list) if gpu_list else "no GPU"
    memory = info.get("memory_gib")
    memory_text = f"{memory:g} GiB RAM" if memory is not None else "RAM unknown"
    cpu = info.get("cpu_model") or "unknown CPU"
    return f"{cpu}, {info['cores']} cores, {memory_text}, {gpu_text}"
