"""Peak resident memory of a process, for tests that bound what a hostile input may cost.

Linux only: the peak (``VmHWM`` in ``/proc/<pid>/status``) is reset to the current resident size
by writing ``5`` to ``/proc/<pid>/clear_refs`` (allowed for our own processes), so the growth
measured is what happened in between, whatever the process did before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MIB = 1024 * 1024


def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


@dataclass
class PeakGrowth:
    """Peak resident size minus the resident size at the start, in bytes (set on exit)."""

    bytes: int = 0

    @property
    def mib(self) -> float:
        return self.bytes / MIB


@contextlib.contextmanager
def peak_rss_growth(pid: int | str = "self") -> Iterator[PeakGrowth]:
    """How far the process's resident memory rose above its starting size during the block."""
    clear_refs = Path(f"/proc/{pid}/clear_refs")
    if not clear_refs.exists():
        pytest.skip("peak memory is measured through /proc/<pid>/clear_refs (Linux)")
    clear_refs.write_text("5")
    start = _status_kib(pid, "VmRSS")
    growth = PeakGrowth()
    yield growth
    growth.bytes = max(0, _status_kib(pid, "VmHWM") - start) * 1024
