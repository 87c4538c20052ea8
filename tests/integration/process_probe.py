"""Resident memory and open file descriptors of a process, sampled from /proc (Linux)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Sample:
    at: float  # seconds since the sampler started
    rss_mib: float
    fds: int


@dataclass
class ProcessSampler:
    """Samples ``pid`` every ``interval`` seconds in a thread, between ``start`` and ``stop``."""

    pid: int
    interval: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProcessSampler:
        began = time.monotonic()

        def run() -> None:
            while not self._stop.is_set():
                self.samples.append(
                    Sample(time.monotonic() - began, rss_mib(self.pid), open_fds(self.pid))
                )
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=run, name="process-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples

    def after(self, seconds: float) -> list[Sample]:
        return [sample for sample in self.samples if sample.at >= seconds]
