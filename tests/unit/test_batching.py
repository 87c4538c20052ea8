"""serving.batching: the micro-batcher against an in-memory fake inference client.

The fake records every call's merged inputs and can be gated by an :class:`asyncio.Event`, slowed
down or made to fail, so most tests control timing by gating rather than by sleeping. Each test
runs its own event loop with ``asyncio.run`` and checks, at the end, that no task was left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import pytest

from serving.batching import BatcherConfig, MicroBatcher, QueueFullError
from serving.client import InferenceResult, ModelInfo
from serving.errors import (
    InferenceFailedError,
    InferenceTimeoutError,
    InferenceUnavailableError,
    InvalidInferenceInputError,
    ServingError,
)

MODEL = "fake-model"
VERSION = "7"

Inputs = dict[str, np.ndarray]


# --- fakes and helpers ---------------------------------------------------------------------------


def item_inputs(tag: int, rows: int = 1) -> Inputs:
    """Rows that say whose they are: ``x[r] = [100 * tag + r, -(100 * tag + r)]``."""
    values = np.arange(rows, dtype=np.int64) + 100 * tag
    return {
        "x": np.stack([values, -values], axis=1),
        "mask": np.full(rows, float(tag), dtype=np.float32),
    }


def model_outputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the fake model computes, row by row (so scattered rows can be checked)."""
    return {"y": inputs["x"] * 2, "m": inputs["mask"] + 0.5}


def assert_own_rows(result: InferenceResult, tag: int, rows: int) -> None:
    expected = model_outputs(item_inputs(tag, rows))
    assert set(result.outputs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(result.outputs[name], value)
    assert result.model_version == VERSION


def tags_of(call: Mapping[str, np.ndarray]) -> list[int]:
    """The tag of each row of a merged call, in order."""
    return [int(value) // 100 for value in call["x"][:, 0]]


def items_of(call: Mapping[str, np.ndarray]) -> list[int]:
    """The distinct tags of a merged call, in order."""
    tags: list[int] = []
    for tag in tags_of(call):
        if not tags or tags[-1] != tag:
            tags.append(tag)
    return tags


class FakeClient:
    """An in-memory :class:`~serving.client.InferenceClient`.

    ``gate``: every call waits for it (set by default; ``gated=True`` starts it clear), then
    sleeps ``delay``, then raises ``error`` if set, else answers :func:`model_outputs`.
    """

    def __init__(
        self, *, gated: bool = False, delay: float = 0.0, error: BaseException | None = None
    ) -> None:
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.delay = delay
        self.error = error
        self.calls: list[Inputs] = []
        self.call_times: list[float] = []
        self.timeouts: list[float | None] = []
        self.active = 0
        self.max_active = 0
        self._changed = asyncio.Event()

    async def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], timeout: float | None = None
    ) -> InferenceResult:
        assert model == MODEL
        self.calls.append({name: np.array(value, copy=True) for name, value in inputs.items()})
        self.call_times.append(time.monotonic())
        self.timeouts.append(timeout)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self._changed.set()
        try:
            await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.error is not None:
                raise self.error
            return InferenceResult(model_outputs(inputs), VERSION)
        finally:
            self.active -= 1
            self._changed.set()

    async def wait_calls(self, count: int, timeout: float = 2.0) -> None:
        """Until the client has received ``count`` calls (event-driven, no polling)."""

        async def wait() -> None:
            while len(self.calls) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def call_rows(self) -> list[int]:
        return [len(call["x"]) for call in self.calls]

    def sent_tags(self) -> set[int]:
        return {tag for call in self.calls for tag in tags_of(call)}

    async def server_ready(self) -> bool:
        return True

    async def model_ready(self, model: str) -> bool:
        return model == MODEL

    async def model_info(self, model: str) -> ModelInfo:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def make_batcher(client: FakeClient, **config: Any) -> MicroBatcher:
    """A started batcher (call inside the running loop)."""
    settings: dict[str, Any] = {"max_batch_size": 8, "max_delay": 0.002} | config
    batcher = MicroBatcher(MODEL, client, BatcherConfig(**settings))
    batcher.start()
    return batcher


def submit(batcher: MicroBatcher, tag: int, rows: int = 1, **kwargs: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(batcher.submit(item_inputs(tag, rows), **kwargs))


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``predicate`` (only where no event is available to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


async def settle() -> None:
    """Let freshly created tasks and the worker run a few steps."""
    for _ in range(5):
        await asyncio.sleep(0)


def other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


def run(body: Callable[[], Awaitable[None]], limit: float = 5.0) -> None:
    """Run a test body on a fresh loop, bounded in time, and check that no task leaked."""

    async def main() -> None:
        async with asyncio.timeout(limit):  # the body runs in this task: no wrapper task
            await body()
        assert other_tasks() == set(), "tasks left behind"

    asyncio.run(main())


# --- construction --------------------------------------------------------------------------------


def test_max_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(MODEL, FakeClient(), BatcherConfig(max_batch_size=0))


# --- ordering and scatter ------------------------------------------------------------------------


def test_results_go_back_to_their_callers_including_multi_row_items() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=8, max_in_flight=1)
        first = submit(batcher, 0, 2)
        await client.wait_calls(1)
        sizes = {tag: 1 + tag % 3 for tag in range(1, 13)}  # 1, 2 or 3 rows each
        tasks = {tag: submit(batcher, tag, rows) for tag, rows in sizes.items()}
        await settle()
        client.gate.set()
        assert_own_rows(await first, 0, 2)
        for tag, task in tasks.items():
            assert_own_rows(await task, tag, sizes[tag])

        # Merged in arrival order, never above max_batch_size, every row sent exactly once.
        assert all(rows <= 8 for rows in client.call_rows())
        order = [tag for call in client.calls for tag in items_of(call)]
        assert order == [0, *sizes]
        assert sum(client.call_rows()) == 2 + sum(sizes.values())
        assert any(len(items_of(call)) > 1 for call in client.calls)
        for call in client.calls:  # every input of a merged call is concatenated consistently
            np.testing.assert_array_equal(call["mask"].astype(np.int64), tags_of(call))
        assert batcher.stats.items == 13
        assert batcher.stats.batches == len(client.calls) < 13
        assert batcher.queued == 0
        await batcher.close()

    run(body)


# --- latency on an idle batcher ------------------------------------------------------------------


def test_lone_request_on_idle_batcher_goes_at_once() -> None:
    async def body() -> None:
        client = FakeClient()
        batcher = make_batcher(client, max_delay=2.0)
        for tag in range(3):  # each request finds the batcher idle again
            start = time.monotonic()
            result = await batcher.submit(item_inputs(tag, 2))
            assert time.monotonic() - start < 1.0  # far below max_delay
            assert_own_rows(result, tag, 2)
        assert client.call_rows() == [2, 2, 2]
        await batcher.close()

    run(body)


# --- batching under load -------------------------------------------------------------------------


def test_items_gather_while_a_batch_is_in_flight() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=4, max_in_flight=1, max_delay=0.001)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        waiting = [submit(batcher, tag) for tag in range(1, 8)]
        await asyncio.sleep(0.05)  # well past max_delay: they wait only for the in-flight slot
        assert len(client.calls) == 1
        assert batcher.queued == 8
        client.gate.set()
        assert_own_rows(await first, 0, 1)
        for tag, task in enumerate(waiting, start=1):
            assert_own_rows(await task, tag, 1)
        assert client.call_rows() == [1, 4, 3]
        assert [items_of(call) for call in client.calls] == [[0], [1, 2, 3, 4], [5, 6, 7]]
        assert batcher.stats.batches == 3
        assert batcher.stats.items == 8
        await batcher.close()

    run(body)


def test_under_concurrent_load_batches_merge_and_respect_the_limits() -> None:
    async def body() -> None:
        client = FakeClient(delay=0.005)
        batcher = make_batcher(client, max_batch_size=4, max_delay=0.002, max_in_flight=2)

        async def caller(tag: int) -> None:
            await asyncio.sleep((tag % 10) * 0.001)
            rows = 1 + tag % 2
            assert_own_rows(await batcher.submit(item_inputs(tag, rows)), tag, rows)

        await asyncio.gather(*(caller(tag) for tag in range(60)))
        assert max(client.call_rows()) <= 4
        assert client.max_active <= 2
        assert batcher.stats.items == 60
        assert batcher.stats.batches == len(client.calls)
        assert batcher.stats.batches < batcher.stats.items
        assert sorted(client.sent_tags()) == list(range(60))
        assert batcher.queued == 0
        await batcher.close()

    run(body)


# --- max_delay, max_batch_size and max_in_flight -------------------------------------------------


def test_full_batch_leaves_without_waiting_for_max_delay() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=4, max_in_flight=2, max_delay=5.0)
        tasks = [submit(batcher, 0)]
        await client.wait_calls(1)  # in flight; one more batch may go
        start = time.monotonic()
        tasks += [submit(batcher, tag) for tag in range(1, 5)]
        await client.wait_calls(2, timeout=2.0)  # well before max_delay
        assert client.call_times[1] - start < 2.0
        assert client.call_rows() == [1, 4]
        client.gate.set()
        for tag, task in enumerate(tasks):
            assert_own_rows(await task, tag, 1)
        await batcher.close()

    run(body)


def test_partial_batch_leaves_after_max_delay() -> None:
    async def body() -> None:
        max_delay = 0.3
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=4, max_in_flight=2, max_delay=max_delay)
        tasks = [submit(batcher, 0)]
        await client.wait_calls(1)
        start = time.monotonic()
        tasks += [submit(batcher, 1), submit(batcher, 2, 2)]  # 3 rows of 4
        await client.wait_calls(2)
        waited = client.call_times[1] - start
        assert max_delay - 0.01 <= waited < max_delay + 1.5
        assert client.call_rows() == [1, 3]
        client.gate.set()
        for tag, task in enumerate(tasks):
            assert_own_rows(await task, tag, 2 if tag == 2 else 1)
        await batcher.close()

    run(body)


def test_max_in_flight_is_respected() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=2, max_in_flight=2, max_delay=0.001)
        tasks = [submit(batcher, tag) for tag in range(10)]
        await client.wait_calls(2)
        await asyncio.sleep(0.1)  # everything is due; only the in-flight bound holds it back
        assert len(client.calls) == 2
        assert client.active == 2
        assert batcher.queued == 10
        client.gate.set()
        for tag, task in enumerate(tasks):
            assert_own_rows(await task, tag, 1)
        assert client.max_active == 2
        assert max(client.call_rows()) <= 2
        assert sum(client.call_rows()) == 10
        await batcher.close()

    run(body)


def test_item_larger_than_max_batch_size_goes_alone() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=4, max_in_flight=1)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        big = submit(batcher, 1, 6)
        small = [submit(batcher, 2), submit(batcher, 3, 2)]
        await settle()
        client.gate.set()
        assert_own_rows(await first, 0, 1)
        assert_own_rows(await big, 1, 6)
        assert_own_rows(await small[0], 2, 1)
        assert_own_rows(await small[1], 3, 2)
        assert [items_of(call) for call in client.calls] == [[0], [1], [2, 3]]
        assert client.call_rows() == [1, 6, 3]

        # And on an idle batcher, at once.
        start = time.monotonic()
        assert_own_rows(await batcher.submit(item_inputs(4, 9)), 4, 9)
        assert time.monotonic() - start < 1.0
        assert client.call_rows()[-1] == 9
        await batcher.close()

    run(body)


def test_abandoned_items_do_not_cut_a_batch_short() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=4, max_in_flight=1)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        a, b, c, d = (
            submit(batcher, 1),
            submit(batcher, 2, 4),
            submit(batcher, 3),
            submit(batcher, 4),
        )
        await settle()
        b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await b
        client.gate.set()
        for tag, task in [(0, first), (1, a), (3, c), (4, d)]:
            assert_own_rows(await task, tag, 1)
        # The abandoned 4-row item would not have fitted: it must not stop the batch.
        assert [items_of(call) for call in client.calls] == [[0], [1, 3, 4]]
        await batcher.close()

    run(body)


# --- errors --------------------------------------------------------------------------------------


def test_typed_error_reaches_every_member_unchanged() -> None:
    async def body() -> None:
        error = InvalidInferenceInputError(f"{MODEL}: bad input")
        client = FakeClient(gated=True, error=error)
        batcher = make_batcher(client, max_batch_size=8, max_in_flight=1)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        members = [submit(batcher, tag) for tag in range(1, 4)]
        await settle()
        client.gate.set()
        outcomes = await asyncio.gather(first, *members, return_exceptions=True)
        assert all(outcome is error for outcome in outcomes)
        assert len(client.calls) == 2
        assert items_of(client.calls[1]) == [1, 2, 3]
        assert batcher.stats.failed == 2
        assert batcher.queued == 0

        client.error = None  # the batcher keeps working after a failure
        assert_own_rows(await batcher.submit(item_inputs(9)), 9, 1)
        await batcher.close()

    run(body)


def test_unexpected_error_is_wrapped_in_serving_error(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        client = FakeClient(gated=True, error=ValueError("boom"))
        batcher = make_batcher(client, max_batch_size=8, max_in_flight=1)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        members = [submit(batcher, tag) for tag in range(1, 4)]
        await settle()
        client.gate.set()
        with pytest.raises(ServingError) as first_error:
            await first
        assert type(first_error.value) is ServingError
        outcomes = await asyncio.gather(*members, return_exceptions=True)
        shared = outcomes[0]
        assert type(shared) is ServingError
        assert MODEL in str(shared) and "boom" in str(shared)
        assert all(outcome is shared for outcome in outcomes)  # one batch, one error
        assert batcher.stats.failed == 2
        await batcher.close()

    run(body)
    assert "unexpected inference failure" in caplog.text


def test_inputs_that_cannot_be_merged_fail_their_batch_instead_of_hanging() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=8, max_in_flight=1, timeout=30.0)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        wide = {"x": np.zeros((1, 3), dtype=np.int64), "mask": np.zeros(1, dtype=np.float32)}
        members = [submit(batcher, 1), asyncio.create_task(batcher.submit(wide))]
        await settle()
        client.gate.set()
        assert_own_rows(await first, 0, 1)
        outcomes = await asyncio.wait_for(asyncio.gather(*members, return_exceptions=True), 2.0)
        assert all(isinstance(outcome, ServingError) for outcome in outcomes)
        assert batcher.queued == 0
        await batcher.close()

    run(body)


# --- bounded queue -------------------------------------------------------------------------------


def test_full_queue_rejects_at_once_with_retry_after() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=2, max_queue=3, max_in_flight=1)
        tasks = [submit(batcher, tag) for tag in range(3)]  # in flight and queued both count
        await client.wait_calls(1)
        assert batcher.queued == 3
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(QueueFullError) as refused:
                await batcher.submit(item_inputs(9))
            assert time.monotonic() - start < 1.0
            assert isinstance(refused.value, ServingError)
            assert refused.value.retry_after >= 1
        assert batcher.stats.rejected == 2
        assert batcher.queued == 3
        assert 9 not in client.sent_tags()

        client.gate.set()
        for tag, task in enumerate(tasks):
            assert_own_rows(await task, tag, 1)
        assert batcher.queued == 0
        assert_own_rows(await batcher.submit(item_inputs(5)), 5, 1)  # room again
        await batcher.close()

    run(body)


# --- deadlines -----------------------------------------------------------------------------------


def test_expired_queued_item_times_out_frees_its_slot_and_is_never_sent() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_in_flight=1)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        other = submit(batcher, 2)
        await settle()
        assert batcher.queued == 2
        start = time.monotonic()
        with pytest.raises(InferenceTimeoutError):
            await batcher.submit(item_inputs(1), timeout=0.1)
        assert time.monotonic() - start >= 0.09
        assert batcher.queued == 2  # its slot is free as soon as the caller has its error
        assert batcher.stats.timed_out == 1

        client.gate.set()
        assert_own_rows(await first, 0, 1)
        assert_own_rows(await other, 2, 1)
        assert 1 not in client.sent_tags()
        assert [items_of(call) for call in client.calls] == [[0], [2]]
        assert batcher.queued == 0
        await batcher.close()

    run(body)


def test_config_timeout_is_the_default_deadline_and_applies_in_flight() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, timeout=0.15)
        with pytest.raises(InferenceTimeoutError):
            await batcher.submit(item_inputs(0))  # sent, then stuck at the server
        assert batcher.queued == 0
        assert len(client.calls) == 1
        (sent_timeout,) = client.timeouts
        assert sent_timeout is not None and 0 < sent_timeout <= 0.15  # the deadline goes along
        client.gate.set()
        await until(lambda: client.active == 0)  # the late answer is dropped quietly
        assert batcher.queued == 0
        await batcher.close()

    run(body)


# --- cancellation --------------------------------------------------------------------------------


def test_cancelled_queued_caller_frees_its_slot_and_is_not_sent() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_in_flight=1)
        first = submit(batcher, 0)
        await client.wait_calls(1)
        queued = {tag: submit(batcher, tag) for tag in (1, 2, 3)}
        await settle()
        assert batcher.queued == 4
        queued[2].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await queued[2]
        assert queued[2].cancelled()
        assert batcher.queued == 3  # at once, while the batch ahead is still blocked
        client.gate.set()
        assert_own_rows(await first, 0, 1)
        assert_own_rows(await queued[1], 1, 1)
        assert_own_rows(await queued[3], 3, 1)
        assert 2 not in client.sent_tags()
        assert [items_of(call) for call in client.calls] == [[0], [1, 3]]
        assert batcher.queued == 0
        await batcher.close()

    run(body)


def test_cancelled_in_flight_caller_frees_its_slot_and_others_still_get_results() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_in_flight=1)
        tasks = {tag: submit(batcher, tag) for tag in (1, 2, 3)}  # same tick: one batch
        await client.wait_calls(1)
        assert items_of(client.calls[0]) == [1, 2, 3]
        assert batcher.queued == 3
        tasks[2].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[2]
        assert batcher.queued == 2
        client.gate.set()
        assert_own_rows(await tasks[1], 1, 1)
        assert_own_rows(await tasks[3], 3, 1)
        assert batcher.queued == 0
        await batcher.close()

    run(body)


# --- batching off --------------------------------------------------------------------------------


def test_disabled_batching_sends_each_item_alone() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, enabled=False, max_batch_size=8, max_in_flight=1)
        sizes = {0: 1, 1: 3, 2: 2, 3: 1}
        tasks = {tag: submit(batcher, tag, rows) for tag, rows in sizes.items()}
        await client.wait_calls(len(sizes))  # all at once: no worker, no in-flight bound
        assert client.active == len(sizes)
        client.gate.set()
        for tag, task in tasks.items():
            assert_own_rows(await task, tag, sizes[tag])
        assert [items_of(call) for call in client.calls] == [[tag] for tag in sizes]
        assert client.call_rows() == list(sizes.values())
        assert batcher.stats.batches == batcher.stats.items == len(sizes)
        await batcher.close()

    run(body)


def test_disabled_batching_keeps_the_queue_bound_and_deadlines() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, enabled=False, max_queue=2)
        held = [submit(batcher, 0), submit(batcher, 1)]
        await client.wait_calls(2)
        with pytest.raises(QueueFullError) as refused:
            await batcher.submit(item_inputs(2))
        assert refused.value.retry_after >= 1
        assert len(client.calls) == 2

        held[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held[1]
        assert batcher.queued == 1
        with pytest.raises(InferenceTimeoutError):
            await batcher.submit(item_inputs(3), timeout=0.1)
        assert batcher.queued == 1
        assert batcher.stats.timed_out == 1

        client.gate.set()
        assert_own_rows(await held[0], 0, 1)
        await batcher.close()

    run(body)


# --- close ---------------------------------------------------------------------------------------


def test_close_fails_pending_callers_and_leaves_no_task() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_in_flight=1, timeout=30.0)
        callers = [submit(batcher, 0)]
        await client.wait_calls(1)
        callers += [submit(batcher, tag) for tag in (1, 2)]
        await settle()
        assert batcher.queued == 3

        await batcher.close()  # awaited directly: nothing else runs before the check
        assert other_tasks() <= set(callers)  # the worker and the in-flight batch are gone
        outcomes = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 1.0)
        assert all(isinstance(outcome, ServingError) for outcome in outcomes), outcomes
        assert not any(isinstance(outcome, InferenceTimeoutError) for outcome in outcomes)
        assert batcher.queued == 0
        assert client.active == 0

        with pytest.raises(ServingError, match="closed"):
            await batcher.submit(item_inputs(3))
        await batcher.close()  # twice is fine

    run(body)


def test_close_with_batching_disabled_fails_in_flight_callers() -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, enabled=False, timeout=30.0)
        callers = [submit(batcher, tag) for tag in range(3)]
        await client.wait_calls(3)
        await batcher.close()  # awaited directly: nothing else runs before the check
        assert other_tasks() <= set(callers)
        outcomes = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 1.0)
        assert all(isinstance(outcome, ServingError) for outcome in outcomes), outcomes
        assert batcher.queued == 0

    run(body)


# --- no busy loop --------------------------------------------------------------------------------


def count_take_ready(batcher: MicroBatcher, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the worker's scheduling passes (``_take_ready`` runs once per pass or more)."""
    counter = [0]
    original = batcher._take_ready

    def counting() -> bool:
        counter[0] += 1
        return original()

    monkeypatch.setattr(batcher, "_take_ready", counting)
    return counter


def test_worker_does_not_spin_while_in_flight_slots_are_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=2, max_in_flight=1, max_delay=0.001)
        counter = count_take_ready(batcher, monkeypatch)
        tasks = [submit(batcher, 0)]
        await client.wait_calls(1)
        tasks += [submit(batcher, tag) for tag in range(1, 6)]  # due, and more than a batch
        await settle()
        before = counter[0]
        await asyncio.sleep(0.2)
        assert counter[0] - before <= 3, counter[0] - before
        tasks[2].cancel()  # an abandoned item in the queue changes nothing
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[2]
        await asyncio.sleep(0.1)
        assert counter[0] - before <= 5, counter[0] - before
        assert len(client.calls) == 1

        client.gate.set()
        for tag, task in enumerate(tasks):
            if tag != 2:
                assert_own_rows(await task, tag, 1)
        await batcher.close()

    run(body)


def test_worker_does_not_spin_while_waiting_for_max_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_batch_size=8, max_in_flight=2, max_delay=5.0)
        counter = count_take_ready(batcher, monkeypatch)
        tasks = [submit(batcher, 0)]
        await client.wait_calls(1)
        tasks += [submit(batcher, tag) for tag in (1, 2)]  # not full, not due for 5 s
        await settle()
        before = counter[0]
        await asyncio.sleep(0.2)
        assert counter[0] - before <= 3, counter[0] - before
        assert len(client.calls) == 1

        client.gate.set()
        for tag, task in enumerate(tasks):
            assert_own_rows(await task, tag, 1)
        await batcher.close()

    run(body)


def test_a_reply_with_the_wrong_number_of_rows_fails_every_member() -> None:
    class ShortClient:
        async def infer(self, model, inputs, timeout=None):  # type: ignore[no-untyped-def]
            return InferenceResult({"y": np.zeros((1, 1), dtype=np.float32)}, "1")

    async def run() -> None:
        batcher = MicroBatcher("m", ShortClient(), BatcherConfig(max_batch_size=4))  # type: ignore[arg-type]
        batcher.start()
        try:
            with pytest.raises(InferenceFailedError, match="1 rows for 2 input rows"):
                await batcher.submit({"x": np.zeros((2, 1), dtype=np.float32)})
            with pytest.raises(ValueError, match="no inputs"):
                await batcher.submit({})
        finally:
            await batcher.close()

    asyncio.run(run())


# --- observer ------------------------------------------------------------------------------------


class RecordingObserver:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.rejections: list[str] = []
        self.batches: list[tuple[int, int]] = []  # (rows, items)
        self.waits: list[float] = []
        self.roundtrips: list[float] = []
        self.failures = 0

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def rejected(self, reason: str) -> None:
        self.rejections.append(reason)

    def batch_sent(self, rows: int, waits: Any) -> None:
        self.batches.append((rows, len(waits)))
        self.waits.extend(waits)

    def batch_done(self, seconds: float) -> None:
        self.roundtrips.append(seconds)

    def batch_failed(self) -> None:
        self.failures += 1


def test_observer_hears_depth_batches_waits_roundtrips_and_refusals() -> None:
    async def scenario() -> RecordingObserver:
        client = FakeClient(gated=True)
        observer = RecordingObserver()
        config = BatcherConfig(max_batch_size=8, max_delay=0.001, max_queue=3, timeout=0.5)
        batcher = MicroBatcher(MODEL, client, config, observer)
        batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(item_inputs(1, rows=2)))
            await client.wait_calls(1)  # the lone item left at once and is held at the gate
            rest = [asyncio.create_task(batcher.submit(item_inputs(t))) for t in (2, 3)]
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFullError):
                await batcher.submit(item_inputs(4))
            client.gate.set()
            await asyncio.gather(first, *rest)
            assert observer.depths[:3] == [1, 2, 3] and observer.depths[-1] == 0
            client.delay = 0.2  # the next call misses its deadline
            with pytest.raises(InferenceTimeoutError):
                await batcher.submit(item_inputs(5), timeout=0.05)
            await asyncio.sleep(0.25)  # its call ends (answered, nobody waiting)
            client.delay, client.error = 0.0, InferenceFailedError("boom")
            with pytest.raises(InferenceFailedError):
                await batcher.submit(item_inputs(6))
        finally:
            await batcher.close()
        return observer

    observer = asyncio.run(scenario())
    assert observer.batches[:2] == [(2, 1), (2, 2)], "rows and items of the first two batches"
    assert observer.rejections == ["queue_full", "deadline"]
    assert len(observer.waits) == 5 and all(wait >= 0 for wait in observer.waits)
    assert len(observer.roundtrips) >= 3 and observer.roundtrips[0] >= 0
    assert observer.failures == 1


# --- riding through an unreachable server -------------------------------------------------------


class FlakyClient(FakeClient):
    """Unreachable for its first ``failures`` calls, then a normal fake."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], timeout: float | None = None
    ) -> InferenceResult:
        if self.failures > 0:
            self.failures -= 1
            self.calls.append(dict(inputs))
            raise InferenceUnavailableError("Triton is unreachable: connection refused")
        return await super().infer(model, inputs, timeout)


def test_a_batch_rides_through_a_short_outage_and_succeeds() -> None:
    async def body() -> None:
        client = FlakyClient(failures=3)
        batcher = make_batcher(client, ride_through=2.0)
        try:
            result = await batcher.submit(item_inputs(1))
            assert_own_rows(result, 1, 1)
            assert len(client.calls) == 4  # three refusals, then the answer
            assert batcher.stats.retries == 3
            assert batcher.stats.failed == 0
        finally:
            await batcher.close()

    run(body)


def test_without_ride_through_an_unreachable_server_fails_at_once() -> None:
    async def body() -> None:
        client = FlakyClient(failures=1)
        batcher = make_batcher(client)
        try:
            with pytest.raises(InferenceUnavailableError):
                await batcher.submit(item_inputs(1))
            assert len(client.calls) == 1
            assert_own_rows(await batcher.submit(item_inputs(2)), 2, 1)
        finally:
            await batcher.close()

    run(body)


def test_after_one_batch_gives_up_later_batches_fail_fast_until_the_server_answers() -> None:
    async def body() -> None:
        client = FlakyClient(failures=10**6)
        batcher = make_batcher(client, ride_through=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(InferenceUnavailableError):
                await batcher.submit(item_inputs(1))
            first = time.monotonic() - started
            assert 0.1 <= first <= 1.0, first  # retried for about ride_through
            calls = len(client.calls)
            assert calls > 2
            started = time.monotonic()
            with pytest.raises(InferenceUnavailableError):
                await batcher.submit(item_inputs(2))
            assert len(client.calls) == calls + 1  # one try, no retries
            assert time.monotonic() - started < 0.1
            client.failures = 0  # the server is back: the next call succeeds and re-arms
            assert_own_rows(await batcher.submit(item_inputs(3)), 3, 1)
            client.failures = 2
            assert_own_rows(await batcher.submit(item_inputs(4)), 4, 1)  # rides through again
        finally:
            await batcher.close()

    run(body)


def test_ride_through_never_outlasts_the_deadline() -> None:
    async def body() -> None:
        client = FlakyClient(failures=10**6)
        batcher = make_batcher(client, ride_through=30.0, timeout=0.4)
        try:
            started = time.monotonic()
            with pytest.raises((InferenceUnavailableError, InferenceTimeoutError)):
                await batcher.submit(item_inputs(1))
            assert time.monotonic() - started < 0.6
        finally:
            await batcher.close()

    run(body)


# --- idle delay ------------------------------------------------------------------------------


def test_an_idle_delay_lets_callers_answered_by_one_batch_come_back_into_the_next() -> None:
    """... and once all four are back, the batch leaves without waiting out the delay."""

    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_in_flight=1, idle_delay=0.5, max_delay=0.002)
        try:
            first = [submit(batcher, tag) for tag in range(4)]
            await client.wait_calls(1)
            assert client.call_rows() == [4]  # queued together before the first batch left
            client.gate.set()
            await asyncio.gather(*first)
            started = time.monotonic()
            # The callers come back one by one, a few ms apart: without the idle delay the first
            # would leave alone.
            again = []
            for tag in range(10, 14):
                again.append(submit(batcher, tag))
                await asyncio.sleep(0.005)
            await asyncio.gather(*again)
            assert client.call_rows() == [4, 4]
            assert time.monotonic() - started < 0.25  # not the 0.5 s idle delay
        finally:
            await batcher.close()

    run(body)


def test_without_an_idle_delay_a_lone_request_leaves_at_once() -> None:
    async def body() -> None:
        client = FakeClient()
        batcher = make_batcher(client, max_delay=0.5)
        try:
            started = time.monotonic()
            assert_own_rows(await batcher.submit(item_inputs(1)), 1, 1)
            assert time.monotonic() - started < 0.1
        finally:
            await batcher.close()

    run(body)


# --- items being prepared -------------------------------------------------------------------


def _prepared_submit(
    batcher: MicroBatcher, tag: int, decode: asyncio.Event
) -> asyncio.Task[InferenceResult]:
    """A caller that announces its item, 'decodes' until ``decode`` is set, then submits."""

    async def caller() -> InferenceResult:
        with batcher.preparing():
            await decode.wait()
        return await batcher.submit(item_inputs(tag))

    return asyncio.create_task(caller())


def test_an_idle_batch_waits_for_items_still_being_prepared() -> None:
    async def body() -> None:
        client = FakeClient()
        batcher = make_batcher(client, max_in_flight=1, prepare_wait=1.0)
        try:
            quick, slow = asyncio.Event(), asyncio.Event()
            quick.set()
            callers = [_prepared_submit(batcher, 0, quick), _prepared_submit(batcher, 1, slow)]
            await asyncio.sleep(0.05)  # far past max_delay and idle_delay
            assert client.call_rows() == []  # the ready item waits for the one being decoded
            slow.set()
            await asyncio.gather(*callers)
            assert client.call_rows() == [2]
        finally:
            await batcher.close()

    run(body)


def test_the_wait_for_items_being_prepared_is_bounded() -> None:
    async def body() -> None:
        client = FakeClient()
        batcher = make_batcher(client, max_in_flight=1, prepare_wait=0.05)
        try:
            never = asyncio.Event()
            stuck = _prepared_submit(batcher, 1, never)
            await settle()  # its preparation has begun
            started = time.monotonic()
            assert_own_rows(await batcher.submit(item_inputs(0)), 0, 1)
            assert 0.04 <= time.monotonic() - started < 0.5
            assert client.call_rows() == [1]
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            assert batcher._preparing == 0  # a cancelled preparation is no longer waited for
        finally:
            await batcher.close()

    run(body)


def test_callers_split_into_groups_come_back_together_when_preparation_is_announced() -> None:
    """Four streams, one frame each in turn, decode taking longer than the idle delay: with
    announcements, the groups left by a first uneven batch merge into whole batches."""

    async def body() -> None:
        client = FakeClient(delay=0.02)
        batcher = make_batcher(client, max_in_flight=1, idle_delay=0.002, prepare_wait=0.2)

        async def stream(tag: int, start_after: float, frames: int) -> None:
            await asyncio.sleep(start_after)
            for frame in range(frames):
                with batcher.preparing():
                    await asyncio.sleep(0.01)  # the decode, longer than the idle delay
                await batcher.submit(item_inputs(100 * tag + frame))

        try:
            # The first stream starts alone (its first batch holds one frame) and sends one frame
            # more, so that every later batch can be whole.
            await asyncio.gather(stream(0, 0.0, 7), *(stream(tag, 0.015, 6) for tag in range(1, 4)))
            assert client.call_rows() == [1, 4, 4, 4, 4, 4, 4]
        finally:
            await batcher.close()

    run(body)


def test_the_idle_delay_runs_from_the_last_return_not_from_each_arrival() -> None:
    """A request arriving after the idle delay has passed leaves at once (a lone stream whose
    decode outlasts the delay pays nothing for it)."""

    async def body() -> None:
        client = FakeClient()
        batcher = make_batcher(client, max_in_flight=1, idle_delay=0.2, max_delay=0.5)
        try:
            await batcher.submit(item_inputs(0))
            await asyncio.sleep(0.25)  # past the idle delay after that batch came back
            started = time.monotonic()
            assert_own_rows(await batcher.submit(item_inputs(1)), 1, 1)
            assert time.monotonic() - started < 0.1
        finally:
            await batcher.close()

    run(body)


def test_an_item_queued_before_the_last_batch_came_back_is_not_one_of_its_callers() -> None:
    """A stream that missed a batch waits in the queue; the batch's own three callers must all
    be back before the next one leaves, or one of them would miss it in turn."""

    async def body() -> None:
        client = FakeClient(gated=True)
        batcher = make_batcher(client, max_in_flight=1, idle_delay=0.3, max_delay=0.002)
        try:
            first = [submit(batcher, tag) for tag in range(3)]
            await client.wait_calls(1)
            late = submit(batcher, 3)  # arrives while the batch of three is in flight
            await settle()
            client.gate.set()
            await asyncio.gather(*first)
            started = time.monotonic()
            back = [submit(batcher, 10), submit(batcher, 11)]
            await asyncio.sleep(0.1)
            assert client.call_rows() == [3]  # the late item and two of three are not enough
            back.append(submit(batcher, 12))
            await asyncio.gather(late, *back)
            assert client.call_rows() == [3, 4]
            assert time.monotonic() - started < 0.25  # left with the third, before 0.3 s
        finally:
            await batcher.close()

    run(body)
