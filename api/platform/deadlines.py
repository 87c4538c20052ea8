"""Many deadlines, one timer: ``expire(key)`` is called for each key still registered when its
deadline (on the event loop's clock) passes.

Request heads and bodies each get a deadline, and nearly all of them are met within
microseconds; a loop timer apiece (scheduled, then cancelled) cost 3-7 µs a request, as much as
the rest of the admission middleware. Here registering and discarding are a dict store and pop;
the one timer waits for the earliest deadline registered, and is rearmed when it fires for
whatever is still registered then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    def __init__(self, expire: Callable[[K], None]) -> None:
        self._expire = expire
        self._waiting: dict[K, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def set(self, key: K, deadline: float) -> None:
        """Expire ``key`` at ``deadline`` unless it is discarded first (replaces its deadline)."""
        self._waiting[key] = deadline
        loop = asyncio.get_running_loop()
        if self._timer is None or loop is not self._loop or deadline < self._timer_at:
            self._arm(loop, deadline)

    def discard(self, key: K) -> None:
        self._waiting.pop(key, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None and loop is self._loop:
            self._timer.cancel()  # (another loop's, from an earlier asyncio.run, is dropped)
        self._loop, self._timer_at = loop, when
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        due = [key for key, deadline in self._waiting.items() if deadline <= now]
        for key in due:
            del self._waiting[key]
        if self._waiting:
            self._arm(self._loop, min(self._waiting.values()))
        for key in due:
            self._expire(key)
