"""Where the CPU went during a measurement: cores used by each server and by the generator.

On a small machine the load generator, the API and Triton share the same cores, so a figure means
little without knowing who used them. Each server under test runs in its own process group
(:mod:`benchmarks.servers`, :class:`serving.launcher.LocalTriton`); :class:`CpuMeter` reads the
user + system CPU time of every live process of each group from ``/proc`` at the start and at the
end of a window and reports cores used (CPU seconds per wall-clock second). The benchmark
process itself is reported as ``generator``. A process that exits inside the window takes its
CPU time with it, so figures are lower bounds for servers that fork short-lived workers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

GENERATOR: Final = "generator"
_TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(pgids: Mapping[str, int], proc: Path = Path("/proc")) -> dict[str, float]:
    """User + system CPU seconds of the live processes in each process group, by name."""
    wanted = {pgid: name for name, pgid in pgids.items()}
    totals = dict.fromkeys(pgids, 0.0)
    if not wanted:
        return totals
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        # After "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
        # cmajflt utime stime ...
        name = wanted.get(int(fields[2]))
        if name is not None:
            totals[name] += (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND
    return totals


class CpuMeter:
    """Cores used by named process groups and by this process between two points in time.

    :meth:`start_at` arms the start after a delay (the end of a warm-up) on a timer thread, so the
    caller can block in its measurement meanwhile.
    """

    def __init__(self, pgids: Mapping[str, int]) -> None:
        self.pgids = dict(pgids)
        self._started: tuple[float, float, dict[str, float]] | None = None
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        """Take the starting snapshot now."""
        self._started = (time.perf_counter(), time.process_time(), group_cpu_seconds(self.pgids))

    def start_at(self, delay: float) -> None:
        """Take the starting snapshot ``delay`` seconds from now (now if ``delay`` <= 0)."""
        if delay <= 0:
            self.start()
            return
        self._timer = threading.Timer(delay, self.start)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> dict[str, float]:
        """Cores used since the start by each group and by this process (``generator``).

        Empty when the window never started (a run shorter than its warm-up).
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self._started is None:
            return {}
        wall_start, cpu_start, groups_start = self._started
        wall = time.perf_counter() - wall_start
        if wall <= 0:
            return {}
        groups_end = group_cpu_seconds(self.pgids)
        used = {name: max(0.0, groups_end[name] - groups_start[name]) / wall for name in self.pgids}
        used[GENERATOR] = (time.process_time() - cpu_start) / wall
        return {name: round(cores, 3) for name, cores in used.items()}
