"""HTTP load generator: closed loop (N clients back to back) and open loop (a fixed arrival rate).

Built to stay out of the way of what it measures: raw HTTP/1.1 over asyncio streams
(:mod:`benchmarks.http11`) on uvloop when it is installed, keep-alive connections, and request
messages encoded ahead of time (:mod:`benchmarks.payloads`).

* :func:`closed_loop`: ``concurrency`` virtual clients, one connection each, each sending its next
  request as soon as the previous one is answered, for ``duration`` seconds or ``requests``
  requests in total, after ``warmup`` seconds whose requests are not counted. A request is
  measured when it is sent after the warm-up; the window ends when the last measured response
  arrives (or the planned end, whichever is later).
* :func:`open_loop`: requests sent at ``rate`` per second with Poisson (exponential gaps, seeded)
  or uniform arrivals, whatever the server does. Latency is measured from each request's
  *scheduled* send time, so time spent queueing (in the server, or in a generator that fell
  behind) is in the numbers, not hidden by it (no coordinated omission). At most
  ``max_outstanding`` requests are in flight; an arrival beyond that is *dropped by the
  generator* and counted as such. Arrivals scheduled during the warm-up are not counted.

Both are coroutines; :func:`run` runs one on a fresh (uvloop) event loop from synchronous code.
:func:`measure_generator_ceiling` measures the generator's own ceiling against a no-op endpoint.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np

from benchmarks.http11 import HttpClientError, HttpConnection, HttpResponse
from benchmarks.payloads import Encoder, RequestSpec, get
from benchmarks.results import ClosedLoopBudget, LoadResult, Recorder, RunInfo

Arrivals = Literal["poisson", "uniform"]
T = TypeVar("T")
# Told every measured response (any status) of a closed loop, e.g. to read its headers.
ResponseHook = Callable[[HttpResponse], None]

DEFAULT_TIMEOUT_S = 30.0
_POISSON_BLOCK = 4096


@dataclass(frozen=True)
class Target:
    """Where requests go: ``http://host:port[/prefix]`` (plain HTTP only)."""

    url: str
    host: str
    port: int
    path_prefix: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the load generator speaks plain http://host:port only, not {url!r}")
        return cls(url, parts.hostname, parts.port or 80, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when uvloop is installed, else ``None`` (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion on a new event loop (uvloop if available)."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coroutine)


def arrival_offsets(rate: float, arrivals: Arrivals, seed: int | None = 0) -> Iterator[float]:
    """Endless send times in seconds from the start: the first at 0, then ``rate`` per second.

    ``uniform``: every ``1/rate`` s. ``poisson``: exponentially distributed gaps of mean
    ``1/rate`` drawn from ``numpy.random.default_rng(seed)``.
    """
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive finite number, not {rate}")
    if arrivals == "uniform":
        for index in itertools.count():
            yield index / rate
    elif arrivals == "poisson":
        rng = np.random.default_rng(seed)
        offset = 0.0
        while True:
            for gap in rng.exponential(1.0 / rate, _POISSON_BLOCK).tolist():
                yield offset
                offset += gap
    else:
        raise ValueError(f"arrivals must be 'poisson' or 'uniform', not {arrivals!r}")


async def _exchange(
    connection: HttpConnection, message: bytes, timeout: float | None, head_request: bool
) -> tuple[HttpResponse | None, str | None]:
    """``(response, None)`` for a response, ``(None, exception kind)`` for a failure."""
    try:
        async with asyncio.timeout(timeout):
            response = await connection.request(message, head_request=head_request)
    except TimeoutError:
        return None, "TimeoutError"
    except (OSError, HttpClientError) as exc:
        return None, type(exc).__name__
    return response, None


def _check_stop(duration: float | None, requests: int | None, warmup: float) -> None:
    if (duration is None) == (requests is None):
        raise ValueError("give exactly one of duration (seconds) and requests (count)")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be positive, not {duration}")
    if requests is not None and requests < 1:
        raise ValueError(f"requests must be at least 1, not {requests}")
    if warmup < 0:
        raise ValueError(f"warmup must be non-negative, not {warmup}")


def _close_all(connections: list[HttpConnection]) -> None:
    for connection in connections:
        connection.close()


async def closed_loop(
    url: str,
    request: RequestSpec,
    *,
    concurrency: int,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 0.0,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    on_response: ResponseHook | None = None,
) -> LoadResult:
    """``concurrency`` clients sending ``request`` back to back (see the module docstring).

    Give ``duration`` (seconds of measured sending) or ``requests`` (measured requests in total,
    shared by all clients). ``timeout`` bounds each request, connection set-up included.
    ``on_response``, when given, is called with every measured response (e.g. to read headers).
    """
    _check_stop(duration, requests, warmup)
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    target = Target.parse(url)
    encode = request.encoder(target.host_header, target.path_prefix)
    head_request = request.method == "HEAD"
    connections = [HttpConnection(target.host, target.port) for _ in range(concurrency)]
    await asyncio.gather(
        *(asyncio.wait_for(c.connect(), timeout) for c in connections), return_exceptions=True
    )
    recorder = Recorder()
    indices = itertools.count()

    cpu_start = time.process_time()
    budget = ClosedLoopBudget(warmup, duration, requests)
    recorder.start_window(budget.measure_from)

    async def client(connection: HttpConnection) -> None:
        while (measured := budget.next_send()) is not None:
            message = encode(next(indices))
            sent_at = time.perf_counter()
            response, kind = await _exchange(connection, message, timeout, head_request)
            if measured:
                completed = time.perf_counter()
                if response is not None:
                    recorder.response(sent_at, sent_at, completed, response.status)
                    if on_response is not None:
                        on_response(response)
                else:
                    recorder.failure(sent_at, sent_at, completed, kind)

    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        _close_all(connections)
    elapsed = time.perf_counter() - budget.started
    info = RunInfo("closed", url, request.method, request.path, warmup, concurrency=concurrency)
    return recorder.result(
        info,
        planned_end=budget.planned_end,
        connections_opened=sum(c.opened for c in connections),
        retries=sum(c.retries for c in connections),
        generator_cpu=(time.process_time() - cpu_start) / elapsed if elapsed > 0 else 0.0,
    )


class _OpenLoopSender:
    """Fires scheduled requests on pooled keep-alive connections, at most ``limit`` at once."""

    def __init__(
        self,
        target: Target,
        encode: Encoder,
        recorder: Recorder,
        *,
        limit: int,
        timeout: float | None,
        head_request: bool,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.on_response = on_response
        self.target = target
        self.encode = encode
        self.recorder = recorder
        self.limit = limit
        self.timeout = timeout
        self.head_request = head_request
        self.connections: list[HttpConnection] = []
        self.in_flight = 0
        self._idle: list[HttpConnection] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: list[BaseException] = []

    def try_send(self, index: int, scheduled: float, measured: bool) -> bool:
        """Start the request now, or return ``False`` when ``limit`` requests are in flight."""
        if self.in_flight >= self.limit:
            return False
        if self._idle:
            connection = self._idle.pop()
        else:
            connection = HttpConnection(self.target.host, self.target.port)
            self.connections.append(connection)
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(
            self._fire(connection, index, scheduled, measured)
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failures.append(task.exception())  # type: ignore[arg-type]

    async def _fire(
        self, connection: HttpConnection, index: int, scheduled: float, measured: bool
    ) -> None:
        try:
            message = self.encode(index)
            sent_at = time.perf_counter()
            response, kind = await _exchange(connection, message, self.timeout, self.head_request)
        finally:
            self.in_flight -= 1
            self._idle.append(connection)
        if measured:
            completed = time.perf_counter()
            if response is not None:
                self.recorder.response(scheduled, sent_at, completed, response.status)
                if self.on_response is not None:
                    self.on_response(response)
            else:
                self.recorder.failure(scheduled, sent_at, completed, kind or "unknown")

    async def drain(self) -> None:
        """Wait for every request in flight; re-raise the first unexpected error."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._failures:
            raise self._failures[0]

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        _close_all(self.connections)


async def open_loop(
    url: str,
    request: RequestSpec,
    *,
    rate: float,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 0.0,
    arrivals: Arrivals = "poisson",
    max_outstanding: int = 1024,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    seed: int | None = 0,
    on_response: ResponseHook | None = None,
) -> LoadResult:
    """``rate`` requests per second scheduled regardless of responses (see the module docstring).

    Give ``duration`` (seconds of measured arrivals) or ``requests`` (measured arrivals). Each
    in-flight request uses its own keep-alive connection from a pool that grows as needed, up to
    ``max_outstanding`` connections. ``on_response`` is called with every measured response.
    """
    _check_stop(duration, requests, warmup)
    if max_outstanding < 1:
        raise ValueError(f"max_outstanding must be at least 1, not {max_outstanding}")
    target = Target.parse(url)
    recorder = Recorder()
    sender = _OpenLoopSender(
        target,
        request.encoder(target.host_header, target.path_prefix),
        recorder,
        limit=max_outstanding,
        timeout=timeout,
        head_request=request.method == "HEAD",
        on_response=on_response,
    )
    measured_arrivals = 0
    cpu_start = time.process_time()
    started = time.perf_counter()
    recorder.start_window(started + warmup)
    planned_end = started + warmup + duration if duration is not None else None
    try:
        for index, offset in enumerate(arrival_offsets(rate, arrivals, seed)):
            scheduled = started + offset
            measured = offset >= warmup
            if measured:
                if duration is not None and offset >= warmup + duration:
                    break
                if requests is not None and measured_arrivals == requests:
                    planned_end = scheduled  # the first arrival not sent closes the window
                    break
                measured_arrivals += 1
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if not sender.try_send(index, scheduled, measured) and measured:
                recorder.drop()
        await sender.drain()
    finally:
        sender.close()
    elapsed = time.perf_counter() - started
    info = RunInfo(
        "open",
        url,
        request.method,
        request.path,
        warmup,
        target_rate_rps=rate,
        arrivals=arrivals,
        max_outstanding=max_outstanding,
    )
    return recorder.result(
        info,
        planned_end=planned_end,
        connections_opened=sum(c.opened for c in sender.connections),
        retries=sum(c.retries for c in sender.connections),
        generator_cpu=(time.process_time() - cpu_start) / elapsed if elapsed > 0 else 0.0,
    )


def measure_generator_ceiling(
    url: str,
    *,
    path: str = "/noop",
    concurrency: int = 16,
    duration: float = 2.0,
    warmup: float = 0.5,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> LoadResult:
    """Closed-loop ``GET path`` against a no-op endpoint as fast as possible.

    The throughput is the generator's ceiling for that server: no benchmark through the same
    stack can exceed it. When ``result.generator_saturated`` the generator itself (one core) is
    the limit; otherwise the server is.
    """
    return run(
        closed_loop(
            url,
            get(path),
            concurrency=concurrency,
            duration=duration,
            warmup=warmup,
            timeout=timeout,
        )
    )
