"""How much a small periodic CPU load elsewhere on the machine slows the model's forward pass.

The streams benchmark runs the API, its clients and Triton on the same cores, and its rounds
record the CPU other processes took (``other``). This probe measures what such a load costs the
model alone: the in-process model (the limit baseline's session, Triton's configuration) runs
back to back at one batch size, in windows alternating between **alone** and **loaded**, where
a separate process spins for ``burst`` every ``period`` (by default 600 µs at 96 Hz, about what
receiving four 24 fps streams costs, 2.9 % of a 2-core machine). The loaded/alone ratio of the
median rates shows how many times its own CPU share the load costs (ONNX Runtime's two threads
wait for each other at every parallel section, so a preempted one stalls both).

The load process is spawned, not forked: a child forked from this process shares the model's
memory copy-on-write, so every page the forward pass writes is copied again in each loaded
window, and the probe then reads 11–13 % lost instead of 4–5 % (measured here).

    python -m benchmarks.interference --repository model_repository --images DIR

The figures printed are from the run; README.md (Streaming) quotes one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

from benchmarks.baselines.limit import load_model, make_batches
from benchmarks.cpu_usage import machine_cpu_seconds
from benchmarks.inputs import ImageInputs, detection_images
from serving.settings import ServingSettings

ALONE, LOADED = "alone", "loaded"


@dataclass(frozen=True)
class Load:
    """A process that spins ``burst_s`` every ``period_s`` at ``nice``."""

    burst_s: float = 0.0006
    period_s: float = 1 / 96
    nice: int = 0

    @property
    def cores(self) -> float:
        """The CPU it asks for, in cores."""
        return self.burst_s / self.period_s


def spin(load: Load, stop: Event) -> None:
    """Busy-wait ``load.burst_s`` once per ``load.period_s`` until ``stop`` (process target)."""
    if load.nice:
        os.nice(load.nice)
    due = time.perf_counter()
    while not stop.is_set():
        due += load.period_s
        until = time.perf_counter() + load.burst_s
        while time.perf_counter() < until:
            pass
        rest = due - time.perf_counter()
        if rest > 0:
            time.sleep(rest)


def schedule(rounds: int) -> list[tuple[int, str]]:
    """(round, kind) in order: alone first in even rounds, loaded first in odd ones."""
    order = []
    for number in range(rounds):
        kinds = (ALONE, LOADED) if number % 2 == 0 else (LOADED, ALONE)
        order += [(number, kind) for kind in kinds]
    return order


@dataclass(frozen=True)
class Window:
    round: int
    kind: str
    items_per_s: float
    stolen_cores: float | None  # cores the hypervisor took (None: the kernel does not say)


@dataclass(frozen=True)
class Summary:
    alone: float  # median items/s
    loaded: float
    load_cores: float
    cores: int

    @property
    def ratio(self) -> float:
        return self.loaded / self.alone

    @property
    def load_share(self) -> float:
        """The load's share of the machine's CPU."""
        return self.load_cores / self.cores

    @property
    def amplification(self) -> float:
        """Throughput lost per unit of CPU share the load took."""
        return (1.0 - self.ratio) / self.load_share


def summarize(windows: Sequence[Window], load: Load, cores: int) -> Summary:
    def median(kind: str) -> float:
        return statistics.median(w.items_per_s for w in windows if w.kind == kind)

    return Summary(median(ALONE), median(LOADED), load.cores, cores)


def measure(
    call: Callable[[], object], items_per_call: int, load: Load, rounds: int, window_s: float
) -> list[Window]:
    """``call`` back to back for ``window_s`` per window, alone and under ``load`` in turn."""
    windows = []
    context = multiprocessing.get_context("spawn")
    for number, kind in schedule(rounds):
        stop = context.Event()
        process = None
        if kind == LOADED:
            process = context.Process(target=spin, args=(load, stop), daemon=True)
            process.start()
            time.sleep(0.3)  # started and spinning before the window opens
        before = machine_cpu_seconds()
        started = time.perf_counter()
        calls = 0
        while time.perf_counter() - started < window_s:
            call()
            calls += 1
        elapsed = time.perf_counter() - started
        after = machine_cpu_seconds()
        if process is not None:
            stop.set()
            process.join()
        stolen = None
        if before is not None and after is not None:
            stolen = (after.stolen - before.stolen) / elapsed
        windows.append(Window(number, kind, calls * items_per_call / elapsed, stolen))
    return windows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="yolos")
    parser.add_argument("--config-name", default="cpu")
    parser.add_argument("--images", type=Path, default=os.environ.get("TRITONGATE_IMAGES_DIR"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--burst-us", type=float, default=600.0)
    parser.add_argument("--hz", type=float, default=96.0)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--window", type=float, default=8.0)
    return parser


def _photos(directory: Path | None) -> ImageInputs:
    """The shared photos under ``directory``, found as the benchmark's runner finds them."""
    if directory is None:
        raise SystemExit("no photos: pass --images DIR or set TRITONGATE_IMAGES_DIR")
    if not ServingSettings(images_dir=directory).parity_images():
        raise SystemExit(f"no JPEG photos under {directory}")
    return detection_images(directory, scratch=directory)  # photos found: nothing generated


def main(argv: Sequence[str] | None = None) -> None:
    options = _parser().parse_args(argv)
    load = Load(options.burst_us / 1e6, 1.0 / options.hz, options.nice)
    model, version = load_model(options.repository, options.model, options.config_name)
    batches = make_batches(_photos(options.images).tensors(), options.batch)
    model.run(batches[0])  # warm-up
    turn = iter(range(1 << 62))

    def call() -> None:
        model.run(batches[next(turn) % len(batches)])

    print(
        f"{options.model} v{version}, batch {options.batch}; load: {options.burst_us:g} µs every "
        f"{1000 / options.hz:.2f} ms at nice {options.nice} ({load.cores:.3f} cores); "
        f"{options.rounds} rounds of {options.window:g} s windows",
        flush=True,
    )
    windows: list[Window] = []
    for window in measure(call, options.batch, load, options.rounds, options.window):
        windows.append(window)
        stolen = "n/a" if window.stolen_cores is None else f"{window.stolen_cores:.3f}"
        print(
            f"round {window.round + 1} {window.kind:6s} {window.items_per_s:6.2f} items/s "
            f"(stolen {stolen} cores)",
            flush=True,
        )
    summary = summarize(windows, load, os.cpu_count() or 1)
    print(
        f"median alone {summary.alone:.2f}, loaded {summary.loaded:.2f} items/s: "
        f"{summary.ratio:.1%} of alone; the load asked for {summary.load_share:.1%} of the "
        f"machine's CPU and cost {1 - summary.ratio:.1%} of the throughput "
        f"({summary.amplification:.1f}× its share)"
    )


if __name__ == "__main__":
    main()
