"""The "limit" baseline: the model alone, in this process, with ONNX Runtime.

No HTTP, no gRPC, no queue: the repository's newest version loaded from the same configuration
Triton uses (``configs/<name>.pbtxt``: instance kind and accelerators, thread counts,
``max_batch_size``; a GPU configuration gets ONNX Runtime's CUDA or TensorRT providers when this
environment's ONNX Runtime has them, the ``gpu`` extra) and run
through :meth:`serving.ort_runtime.OrtModel.run_requests`, the code path of the Triton backend's
``execute()``. For each batch size, calls are made back to back for a fixed time after a warm-up;
the figures are the latency of one call (same percentile code as every other target) and the
items per second. Batch 1 is what one request at a time can get; the best batch is the most
any serving stack around this model can get on this hardware.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format

from benchmarks.cpu_usage import MachineMeter
from benchmarks.stats import LatencySummary, summarize_seconds
from serving.model_config import config_path, load_model_config
from serving.model_repository import MODEL_FILENAME, model_versions
from serving.ort_runtime import OrtModel, RequestError

Feeds = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class CallFigures:
    """Back-to-back calls of one kind: how many, over how long, their latency, and meanwhile
    the cores the hypervisor took away and those other processes used (``None``: not known)."""

    calls: int
    seconds: float
    latency: LatencySummary
    stolen_cores: float | None = None
    other_cores: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "seconds": self.seconds,
            "latency": self.latency.to_dict(),
            "stolen_cores": self.stolen_cores,
            "other_cores": self.other_cores,
        }


@dataclass(frozen=True)
class BatchFigures:
    """One batch size: per-call latency and items (documents, images) per second."""

    batch_size: int
    figures: CallFigures

    @property
    def items_per_s(self) -> float:
        f = self.figures
        return self.batch_size * f.calls / f.seconds if f.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "items_per_s": self.items_per_s,
            **self.figures.to_dict(),
        }


@dataclass(frozen=True)
class LimitResult:
    """All batch sizes measured for one model, plus optional pre-processing figures."""

    model: str
    version: str
    providers: tuple[str, ...]
    batches: tuple[BatchFigures, ...]
    preprocess: CallFigures | None = None

    @property
    def batch1(self) -> BatchFigures | None:
        return next((b for b in self.batches if b.batch_size == 1), None)

    @property
    def best(self) -> BatchFigures:
        return max(self.batches, key=lambda b: b.items_per_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "providers": list(self.providers),
            "batches": [b.to_dict() for b in self.batches],
            "best_batch_size": self.best.batch_size,
            "preprocess": None if self.preprocess is None else self.preprocess.to_dict(),
        }


def measure_calls(call: Callable[[int], object], *, duration: float, warmup: float) -> CallFigures:
    """Call ``call(i)`` back to back: ``warmup`` seconds (at least once), then ``duration``.

    At least three calls are measured, however long they take.
    """
    index = 0
    warm_until = time.perf_counter() + warmup
    while True:
        call(index)
        index += 1
        if time.perf_counter() >= warm_until:
            break
    latencies: list[float] = []
    machine = MachineMeter()
    machine.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    while len(latencies) < 3 or time.perf_counter() - started < duration:
        sent = time.perf_counter()
        call(index)
        latencies.append(time.perf_counter() - sent)
        index += 1
    elapsed = time.perf_counter() - started
    own = (time.process_time() - cpu_started) / elapsed
    use = machine.stop()
    return CallFigures(
        len(latencies),
        elapsed,
        summarize_seconds(latencies),
        None if use is None else use.stolen,
        None if use is None else use.other(own),
    )


def load_model_config_dict(repository: Path, model: str, config_name: str | None) -> dict[str, Any]:
    """``model``'s configuration (the ``config_name`` variant if present) as JSON-like dict."""
    model_dir = repository / model
    path = config_path(model_dir, config_name)
    if not path.exists():
        path = config_path(model_dir)
    return json_format.MessageToDict(load_model_config(path), preserving_proto_field_name=True)


def load_model(repository: Path, model: str, config_name: str | None) -> tuple[OrtModel, str]:
    """The newest version of ``model`` as Triton's configuration describes it, and its version."""
    config = load_model_config_dict(repository, model, config_name)
    versions = model_versions(repository / model)
    if not versions:
        raise FileNotFoundError(f"no exported version of {model} under {repository / model}")
    version = versions[-1]
    path = repository / model / str(version) / MODEL_FILENAME
    groups = config.get("instance_group") or [{}]
    kind = str(groups[0].get("kind", "KIND_CPU"))  # a GPU config gets CUDA/TensorRT if available
    return OrtModel.from_triton_config(path, config, instance_kind=kind), str(version)


def make_batches(samples: Sequence[Feeds], batch_size: int, count: int = 4) -> list[Feeds]:
    """Up to ``count`` distinct batches of ``batch_size`` consecutive samples (rotating)."""
    batches = []
    for start in range(0, min(count, len(samples)) * batch_size, batch_size):
        chosen = [samples[(start + k) % len(samples)] for k in range(batch_size)]
        batches.append({name: np.concatenate([s[name] for s in chosen]) for name in chosen[0]})
    return batches


def measure_limit(
    model: OrtModel,
    name: str,
    version: str,
    samples: Sequence[Feeds],
    batch_sizes: Sequence[int],
    *,
    duration: float,
    warmup: float,
    preprocess: Callable[[int], object] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> LimitResult:
    """Figures for each batch size (those above the model's ``max_batch_size`` are skipped).

    ``samples`` are single-item feeds (batch dimension 1). ``preprocess(i)``, when given, is
    measured the same way (the client-side work a request needs before the model, e.g. image
    decoding). ``on_batch`` is told each batch size before it runs (progress).
    """
    figures = []
    for batch_size in batch_sizes:
        if model.max_batch_size and batch_size > model.max_batch_size:
            continue
        if on_batch is not None:
            on_batch(batch_size)
        batches = make_batches(samples, batch_size)

        def call(index: int, batches: list[Feeds] = batches) -> None:
            (result,) = model.run_requests([batches[index % len(batches)]])
            if isinstance(result, RequestError):
                raise result

        figures.append(
            BatchFigures(batch_size, measure_calls(call, duration=duration, warmup=warmup))
        )
    pre = (
        None
        if preprocess is None
        else measure_calls(preprocess, duration=min(duration, 2.0), warmup=0.0)
    )
    return LimitResult(name, version, tuple(model.active_providers), tuple(figures), pre)
