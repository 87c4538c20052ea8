"""The "Triton direct" baseline: gRPC straight to Triton, no API in between.

``concurrency`` coroutines share one ``tritonclient.grpc.aio`` client (through
:class:`serving.client.TritonGrpcClient`, as each API worker does) and call ``ModelInfer`` back to
back with ready-made input tensors, for a fixed duration or request count after a warm-up. The
outcome is a :class:`benchmarks.results.LoadResult` built by the same
:class:`~benchmarks.results.Recorder` as the HTTP generator's, so percentiles, windows and error
counts mean exactly the same. A successful call is counted under status 200 (gRPC ``OK``); a
failed one by the kind of error it raised (e.g. ``InferenceUnavailableError``).

For detection the tensors are pre-processed once before the run: the figures are Triton's alone,
while the API's include decoding and resizing each upload (measured separately by the limit
baseline).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence

import numpy as np

from benchmarks.results import ClosedLoopBudget, LoadResult, Recorder, RunInfo
from serving.client import TritonGrpcClient
from serving.errors import ServingError

DEFAULT_TIMEOUT_S = 30.0
OK_STATUS = 200


def _check(duration: float | None, requests: int | None, warmup: float, concurrency: int) -> None:
    if (duration is None) == (requests is None):
        raise ValueError("give exactly one of duration (seconds) and requests (count)")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be positive, not {duration}")
    if requests is not None and requests < 1:
        raise ValueError(f"requests must be at least 1, not {requests}")
    if warmup < 0 or concurrency < 1:
        raise ValueError("warmup must be non-negative and concurrency at least 1")


async def closed_loop(
    grpc_url: str,
    model: str,
    samples: Sequence[Mapping[str, np.ndarray]],
    *,
    concurrency: int,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 0.0,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> LoadResult:
    """``concurrency`` concurrent ``ModelInfer`` loops over ``samples`` (rotating)."""
    _check(duration, requests, warmup, concurrency)
    if not samples:
        raise ValueError("no input samples")
    client = TritonGrpcClient(grpc_url)
    recorder = Recorder()
    indices = itertools.count()
    try:
        await client.infer(model, samples[0], timeout=timeout)  # channel up, output names known
        cpu_start = time.process_time()
        budget = ClosedLoopBudget(warmup, duration, requests)
        recorder.start_window(budget.measure_from)

        async def worker() -> None:
            while (measured := budget.next_send()) is not None:
                inputs = samples[next(indices) % len(samples)]
                sent_at = time.perf_counter()
                try:
                    await client.infer(model, inputs, timeout=timeout)
                except ServingError as error:
                    if measured:
                        recorder.failure(
                            sent_at, sent_at, time.perf_counter(), type(error).__name__
                        )
                else:
                    if measured:
                        recorder.response(sent_at, sent_at, time.perf_counter(), OK_STATUS)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - budget.started
    finally:
        await client.close()
    info = RunInfo(
        "closed", f"grpc://{grpc_url}", "gRPC", f"ModelInfer/{model}", warmup, concurrency
    )
    return recorder.result(
        info,
        planned_end=budget.planned_end,
        connections_opened=1,
        retries=0,
        generator_cpu=(time.process_time() - cpu_start) / elapsed if elapsed > 0 else 0.0,
    )
