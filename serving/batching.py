"""Front-end micro-batching: concurrent calls for one model merged into one inference request.

One :class:`MicroBatcher` per model per worker process, apart from any model code: it only
concatenates input arrays along the batch dimension, calls an :class:`InferenceClient` and
splits the outputs back.

* A batch leaves when it holds ``max_batch_size`` rows, or when its oldest item has waited
  ``max_delay``. When nothing is in flight a lone request leaves at once, so an idle service adds
  no delay; under load, requests gather while the previous batch runs. A slow model whose
  callers come back together (several camera streams answered by one batch) keeps its batches
  whole with a small ``idle_delay``: for that long after a batch comes back (0 by default), the
  next one waits for company; a request arriving later leaves at once, and so does the batch
  once as many rows as the last batch answered have arrived since it came back (its callers
  are all back; an item that was already waiting does not count as one of them).
* Callers announce the items they are still preparing (:meth:`MicroBatcher.preparing`, around
  an image decode, say). When nothing is in flight, a batch that is not full also waits for those,
  at most ``prepare_wait`` past its due time. Without it, callers that come back from one batch
  but decode at different speeds split into groups that take turns (batches of 1 and 3, or
  2 and 2, instead of 4) and stay split.
* The queue is bounded (``max_queue`` items): when full, :meth:`submit` fails at once with
  :class:`QueueFullError` (HTTP 503 with ``Retry-After``).
* Each item has a deadline: past it the caller gets :class:`InferenceTimeoutError` (HTTP 504) and
  the item is dropped from the queue. A cancelled caller (client gone) frees its slot at once.
* When a batched call fails, every member gets the same typed error. While the server is
  unreachable a batch is retried for up to ``ride_through`` seconds (within its deadline), so a
  restarted server costs latency rather than errors; once one batch has given up, later batches
  fail at once (no retries) until a call succeeds again.
* ``enabled=False`` turns front-end batching off: each call goes straight to the client (Triton's
  own dynamic batcher still merges them); the queue bound and deadlines still apply.
* A :class:`BatcherObserver` hears about queue depth, refusals, batches and their round trips,
  so the API can export metrics without this module knowing about Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from serving.client import InferenceClient, InferenceResult
from serving.errors import (
    InferenceFailedError,
    InferenceTimeoutError,
    InferenceUnavailableError,
    ServingError,
)

logger = logging.getLogger(__name__)


class QueueFullError(ServingError):
    """The model's queue is at its bound: refuse now rather than queue without limit (503)."""

    def __init__(self, model: str, retry_after: float) -> None:
        super().__init__(f"{model}: the inference queue is full, retry shortly")
        self.retry_after = retry_after


RejectReason = Literal["queue_full", "deadline"]


class BatcherObserver(Protocol):
    """Told what one model's batcher does (called on the event loop; must be cheap)."""

    def queue_depth(self, depth: int) -> None:
        """Items admitted and not yet answered (waiting or in flight), after every change."""

    def rejected(self, reason: RejectReason) -> None:
        """An item refused (full queue: 503) or given up past its deadline (504)."""

    def batch_sent(self, rows: int, waits: Sequence[float]) -> None:
        """A call leaves for the server with ``rows`` rows; ``waits``: each item's queue time."""

    def batch_done(self, seconds: float) -> None:
        """The server's call returned (an answer or an error) after ``seconds``."""

    def batch_failed(self) -> None:
        """A batch failed: every member got the error."""


class NullBatcherObserver:
    """Observes nothing."""

    def queue_depth(self, depth: int) -> None:
        pass

    def rejected(self, reason: RejectReason) -> None:
        pass

    def batch_sent(self, rows: int, waits: Sequence[float]) -> None:
        pass

    def batch_done(self, seconds: float) -> None:
        pass

    def batch_failed(self) -> None:
        pass


@dataclass(frozen=True)
class BatcherConfig:
    max_batch_size: int
    max_delay: float = 0.002  # seconds the oldest queued item may wait for others
    max_queue: int = 1024  # queued + in-flight items
    timeout: float = 10.0  # per-item deadline, seconds
    max_in_flight: int = 2  # batches sent and not yet answered
    enabled: bool = True
    ride_through: float = 0.0  # seconds a batch retries while the server is unreachable
    idle_delay: float = 0.0  # seconds the oldest item waits for company when nothing is in flight
    prepare_wait: float = 0.0  # at most this much longer, for items being prepared (idle only)


# Pauses between retries while the server is unreachable (doubling from the first to the last).
RETRY_PAUSE_FIRST = 0.05
RETRY_PAUSE_LAST = 0.5


@dataclass
class _Item:
    inputs: Mapping[str, np.ndarray]
    rows: int
    deadline: float
    future: asyncio.Future[InferenceResult]
    enqueued: float = field(default_factory=time.monotonic)
    released: bool = False  # its slot in ``max_queue`` has been given back


@dataclass
class BatcherStats:
    """Counters since start: how many calls reached the client for how many items."""

    items: int = 0
    batches: int = 0
    rejected: int = 0
    timed_out: int = 0
    failed: int = 0
    retries: int = 0  # calls repeated because the server was unreachable


class MicroBatcher:
    """Queue, batch and scatter inference calls for one model."""

    def __init__(
        self,
        model: str,
        client: InferenceClient,
        config: BatcherConfig,
        observer: BatcherObserver | None = None,
    ) -> None:
        if config.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.model = model
        self.client = client
        self.config = config
        self.observer: BatcherObserver = observer or NullBatcherObserver()
        self.stats = BatcherStats()
        self._queue: deque[_Item] = deque()
        self._live = 0  # items admitted and not yet answered, cancelled or expired
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._unreachable = False  # a batch gave up on an unreachable server; none since answered
        self._idle_since = 0.0  # when the last batch in flight came back
        self._answered_rows = 0  # rows of that batch: its callers may be about to return
        self._preparing = 0  # items announced by callers who are still preparing them

    # -- public ---------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Items admitted and not yet answered (queued or in flight)."""
        return self._live

    def start(self) -> None:
        if self.config.enabled and self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"batcher-{self.model}")

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        # In-flight batches fail their members themselves when cancelled (see _send); wait for
        # them so that no task outlives the batcher.
        in_flight = list(self._in_flight)
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(self._stopping())

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        """Around the preparation of one item that will be submitted next: while it lasts, an
        idle batch that is not full waits for it (up to ``prepare_wait``; see the module doc)."""
        self._preparing += 1
        try:
            yield
        finally:
            self._preparing -= 1
            self._wakeup.set()

    async def submit(
        self, inputs: Mapping[str, np.ndarray], timeout: float | None = None
    ) -> InferenceResult:
        """Run ``inputs`` (arrays with a leading batch dimension) as part of a batch."""
        if self._closed:
            raise ServingError(f"{self.model}: the batcher is closed")
        if self._live >= self.config.max_queue:
            self.stats.rejected += 1
            self.observer.rejected("queue_full")
            raise QueueFullError(self.model, self._retry_after())
        budget = self.config.timeout if timeout is None else timeout
        if not inputs:
            raise ValueError(f"{self.model}: no inputs to run")
        rows = int(next(iter(inputs.values())).shape[0])
        future: asyncio.Future[InferenceResult] = asyncio.get_running_loop().create_future()
        item = _Item(inputs, rows, time.monotonic() + budget, future)
        self._live += 1
        self.observer.queue_depth(self._live)
        future.add_done_callback(lambda _: self._release(item))
        if self.config.enabled:
            self._queue.append(item)
            self._wakeup.set()
        else:
            self._launch([item])
        try:
            return await asyncio.wait_for(asyncio.shield(future), budget)
        except TimeoutError:
            self.stats.timed_out += 1
            self.observer.rejected("deadline")
            future.cancel()
            self._release(item)  # now, not from the done callback one loop step later
            raise InferenceTimeoutError(
                f"{self.model}: no result within {budget:.3g} s (deadline)"
            ) from None
        except asyncio.CancelledError:
            future.cancel()  # the caller went away: its slot is free from now on
            self._release(item)
            raise

    # -- internals ------------------------------------------------------------------------------

    def _release(self, item: _Item) -> None:
        """Give ``item``'s slot back (once: called early by submit, then by the done callback)."""
        if not item.released:
            item.released = True
            self._live -= 1
            self.observer.queue_depth(self._live)

    def _stopping(self) -> ServingError:
        return ServingError(f"{self.model}: the service is stopping")

    def _retry_after(self) -> float:
        """A hint for clients: roughly how long the current backlog takes to drain."""
        batches = max(1, self._live // self.config.max_batch_size)
        return max(1.0, batches * max(self.config.max_delay, 0.05))

    def _queued_rows(self, since: float = -math.inf) -> int:
        """Rows waiting in the queue (those that arrived at ``since`` or later)."""
        return sum(
            item.rows for item in self._queue if item.enqueued >= since and not item.future.done()
        )

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._take_ready():
                pass
            if self._queue and len(self._in_flight) < self.config.max_in_flight:
                # Not due yet: wait for more items or for the oldest item's max_delay. (With
                # every in-flight slot taken, the next finished batch sets the wake-up event.)
                remaining = self._due_at() - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), max(remaining, 0.0))
                self._wakeup.set()

    def _take_ready(self) -> bool:
        """Send one batch if one is due; whether one was sent."""
        self._drop_finished()
        if not self._queue or len(self._in_flight) >= self.config.max_in_flight:
            return False
        full = self._queued_rows() >= self.config.max_batch_size
        due = time.monotonic() >= self._due_at()
        if not (full or due):
            return False
        batch: list[_Item] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # abandoned: skip it without counting its rows
                self._queue.popleft()
                continue
            if rows + head.rows > self.config.max_batch_size:
                break
            batch.append(self._queue.popleft())
            rows += head.rows
        if not batch and self._queue:  # a single item larger than the batch goes alone
            batch.append(self._queue.popleft())
        if batch:
            self._launch(batch)
        return bool(batch)

    def _due_at(self) -> float:
        """When the next batch leaves if it is not full: ``max_delay`` after its oldest item
        arrived while a batch is in flight; else when it arrived, but not before ``idle_delay``
        after the last batch came back (the callers it answered may be about to return), plus up
        to ``prepare_wait`` while items that would fit are still being prepared. Once as many
        rows as that batch answered have arrived since it came back and none is being prepared,
        its callers are back: the batch leaves without waiting out the idle delay."""
        oldest = self._queue[0].enqueued
        if self._in_flight:
            return oldest + self.config.max_delay
        if not self._preparing and 0 < self._answered_rows <= self._queued_rows(self._idle_since):
            return oldest
        due = max(oldest, self._idle_since + self.config.idle_delay)
        if self._preparing and self._queued_rows() < self.config.max_batch_size:
            due += self.config.prepare_wait
        return due

    def _drop_finished(self) -> None:
        """Forget items whose caller gave up (deadline passed or cancelled)."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()

    def _launch(self, batch: list[_Item]) -> None:
        task = asyncio.create_task(self._send(batch))
        self._in_flight.add(task)
        rows = sum(item.rows for item in batch)
        task.add_done_callback(lambda done: self._batch_done(done, rows))

    def _batch_done(self, task: asyncio.Task[None], rows: int) -> None:
        self._in_flight.discard(task)
        if not self._in_flight:
            self._idle_since = time.monotonic()
            self._answered_rows = rows
        self._wakeup.set()

    async def _send(self, batch: list[_Item]) -> None:
        self.stats.batches += 1
        self.stats.items += len(batch)
        started = time.monotonic()
        self.observer.batch_sent(
            sum(item.rows for item in batch), [started - item.enqueued for item in batch]
        )
        try:
            # Merging is inside the try: inputs that cannot be concatenated (another name or
            # trailing shape) fail this batch's members instead of killing the task silently.
            names = list(batch[0].inputs)
            merged = (
                dict(batch[0].inputs)
                if len(batch) == 1
                else {name: np.concatenate([item.inputs[name] for item in batch]) for name in names}
            )
            call_started = time.monotonic()
            try:
                result = await self._infer(batch, merged)
            finally:
                self.observer.batch_done(time.monotonic() - call_started)
            _check_rows(self.model, result, sum(item.rows for item in batch))
        except asyncio.CancelledError:
            # Only close() cancels a batch: its members are no longer in the queue, so fail them
            # here rather than leave their callers waiting for their deadline.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(self._stopping())
            raise
        except Exception as error:
            self.stats.failed += 1
            self.observer.batch_failed()
            if not isinstance(error, ServingError):
                logger.exception("%s: unexpected inference failure", self.model)
                error = ServingError(f"{self.model}: inference failed: {error}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        offset = 0
        for item in batch:
            if not item.future.done():
                outputs = {
                    name: value[offset : offset + item.rows]
                    for name, value in result.outputs.items()
                }
                item.future.set_result(InferenceResult(outputs, result.model_version))
            offset += item.rows

    async def _infer(self, batch: list[_Item], merged: Mapping[str, np.ndarray]) -> InferenceResult:
        """One call for ``batch``, retried while the server is unreachable (see the module doc)."""
        deadline = max(item.deadline for item in batch)
        ride_through = 0.0 if self._unreachable else self.config.ride_through
        give_up = min(deadline, time.monotonic() + ride_through)
        pause = RETRY_PAUSE_FIRST
        while True:
            try:
                result = await self.client.infer(
                    self.model, merged, timeout=max(deadline - time.monotonic(), 0.001)
                )
            except InferenceUnavailableError:
                abandoned = all(item.future.done() for item in batch)
                if abandoned or time.monotonic() + pause >= give_up:
                    if not self._unreachable:
                        logger.warning("%s: the inference server is unreachable", self.model)
                    self._unreachable = True
                    raise
                self.stats.retries += 1
                await asyncio.sleep(pause)
                pause = min(2 * pause, RETRY_PAUSE_LAST)
                continue
            if self._unreachable:
                logger.info("%s: the inference server answers again", self.model)
            self._unreachable = False
            return result


def _check_rows(model: str, result: InferenceResult, rows: int) -> None:
    """Every output must have one row per input row, or the scatter would misalign."""
    for name, value in result.outputs.items():
        if value.shape[0] != rows:
            raise InferenceFailedError(
                f"{model}: output {name!r} has {value.shape[0]} rows for {rows} input rows"
            )
