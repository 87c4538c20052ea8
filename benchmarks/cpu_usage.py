"""Where the CPU went during a measurement: cores used by each server and by the generator.

On a small machine the load generator, the API and Triton share the same cores, so a figure means
little without knowing who used them. Each server under test runs in its own process group
(:mod:`benchmarks.servers`, :class:`serving.launcher.LocalTriton`); :class:`CpuMeter` reads the
user + system CPU time of every live process of each group from ``/proc`` at the start and at the
end of a window and reports cores used (CPU seconds per wall-clock second). The benchmark
process itself is reported as ``generator``. A process that exits inside the window takes its
CPU time with it, so figures are lower bounds for servers that fork short-lived workers.

On a virtual machine the hypervisor may run other guests on this machine's cores: that time is
*steal* in ``/proc/stat``. It reached 30 % of the CPU for tens of seconds at a time on the
machines these reports come from, and a two-threaded forward pass then takes up to twice as
long. :class:`CpuMeter` reports it as ``stolen`` (cores taken away, machine-wide) beside the
groups, so that a slow figure can be told apart from a slow machine.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

GENERATOR: Final = "generator"
STOLEN: Final = "stolen"
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


def stolen_cpu_seconds(stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds the hypervisor gave to other guests since boot, all cores together.

    ``None`` where the kernel does not say (no ``/proc/stat``, or no steal column).
    """
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) / _TICKS_PER_SECOND


class StealMeter:
    """Cores stolen by the hypervisor between :meth:`start` and :meth:`stop` (``None``: unknown)."""

    def __init__(self, stat: Path = Path("/proc/stat")) -> None:
        self.stat = stat
        self._started: tuple[float, float | None] | None = None

    def start(self) -> None:
        self._started = (time.perf_counter(), stolen_cpu_seconds(self.stat))

    def stop(self) -> float | None:
        if self._started is None:
            return None
        wall_start, stolen_start = self._started
        stolen_end = stolen_cpu_seconds(self.stat)
        wall = time.perf_counter() - wall_start
        if stolen_start is None or stolen_end is None or wall <= 0:
            return None
        return round(max(0.0, stolen_end - stolen_start) / wall, 3)


class CpuMeter:
    """Cores used by named process groups and by this process between two points in time.

    :meth:`start_at` arms the start after a delay (the end of a warm-up) on a timer thread, so the
    caller can block in its measurement meanwhile.
    """

    def __init__(self, pgids: Mapping[str, int]) -> None:
        self.pgids = dict(pgids)
        self._started: tuple[float, float, dict[str, float]] | None = None
        self._timer: threading.Timer | None = None
        self._steal = StealMeter()

    def start(self) -> None:
        """Take the starting snapshot now."""
        self._steal.start()
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
        """Cores used since the start by each group and by this process (``generator``), and
        the cores the hypervisor took away (``stolen``, when the kernel tells).

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
        stolen = self._steal.stop()
        if stolen is not None:
            used[STOLEN] = stolen
        return {name: round(cores, 3) for name, cores in used.items()}
