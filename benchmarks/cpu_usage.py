"""Where the CPU went during a measurement: cores used by each server and by the generator.

On a small machine the load generator, the API and Triton share the same cores, so a figure means
little without knowing who used them. Each server under test runs in its own process group
(:mod:`benchmarks.servers`, :class:`serving.launcher.LocalTriton`); :class:`CpuMeter` reads the
user + system CPU time of every live process of each group from ``/proc`` at the start and at the
end of a window and reports cores used (CPU seconds per wall-clock second). The benchmark
process itself is reported as ``generator``. A process that exits inside the window takes its
CPU time with it, so figures are lower bounds for servers that fork short-lived workers.

Two things outside the benchmark can slow what it measures, and :class:`CpuMeter` reports both
beside the groups (machine-wide, from ``/proc/stat``), so that a slow figure can be told apart
from a slow machine: ``stolen``, the cores the hypervisor gave to other guests (*steal* time: it
reached 30 % of the CPU for tens of seconds at a time on the machines these reports come from,
and a two-threaded forward pass then took up to twice as long), and ``other``, the cores used
by every process that is neither a server under test nor the benchmark (a build, a test run,
a database's background work).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

GENERATOR: Final = "generator"
STOLEN: Final = "stolen"
OTHER: Final = "other"
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


@dataclass(frozen=True)
class MachineCpu:
    """Machine-wide CPU seconds since boot, all cores together (``/proc/stat``'s first line)."""

    busy: float  # user, nice, system, irq and softirq: what every process and the kernel ran
    stolen: float  # given by the hypervisor to other guests


def machine_cpu_seconds(stat: Path = Path("/proc/stat")) -> MachineCpu | None:
    """The machine's CPU seconds; ``None`` where the kernel does not say (no ``/proc/stat``,
    or no steal column)."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (guest time is
    # already counted in user and nice)
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    return MachineCpu(busy / _TICKS_PER_SECOND, ticks[7] / _TICKS_PER_SECOND)


@dataclass(frozen=True)
class MachineUse:
    """Cores used machine-wide over a window: by everything, and taken by the hypervisor."""

    busy: float
    stolen: float

    def other(self, measured: float) -> float:
        """Cores used by processes other than those ``measured`` (cores) account for."""
        return round(max(0.0, self.busy - measured), 3)


class MachineMeter:
    """Machine-wide cores busy and stolen between :meth:`start` and :meth:`stop`."""

    def __init__(self, stat: Path = Path("/proc/stat")) -> None:
        self.stat = stat
        self._started: tuple[float, MachineCpu | None] | None = None

    def start(self) -> None:
        self._started = (time.perf_counter(), machine_cpu_seconds(self.stat))

    def stop(self) -> MachineUse | None:
        """``None`` when never started or where the kernel does not tell."""
        if self._started is None:
            return None
        wall_start, first = self._started
        last = machine_cpu_seconds(self.stat)
        wall = time.perf_counter() - wall_start
        if first is None or last is None or wall <= 0:
            return None
        return MachineUse(
            busy=round(max(0.0, last.busy - first.busy) / wall, 3),
            stolen=round(max(0.0, last.stolen - first.stolen) / wall, 3),
        )


class CpuMeter:
    """Cores used by named process groups and by this process between two points in time.

    :meth:`start_at` arms the start after a delay (the end of a warm-up) on a timer thread, so the
    caller can block in its measurement meanwhile.
    """

    def __init__(self, pgids: Mapping[str, int]) -> None:
        self.pgids = dict(pgids)
        self._started: tuple[float, float, dict[str, float]] | None = None
        self._timer: threading.Timer | None = None
        self._machine = MachineMeter()

    def start(self) -> None:
        """Take the starting snapshot now."""
        self._machine.start()
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
        """Cores used since the start by each group and by this process (``generator``); and,
        when the kernel tells, the cores the hypervisor took away (``stolen``) and those used by
        every other process on the machine (``other``).

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
        machine = self._machine.stop()
        if machine is not None:
            used[OTHER] = machine.other(sum(used.values()))
            used[STOLEN] = machine.stolen
        return {name: round(cores, 3) for name, cores in used.items()}
