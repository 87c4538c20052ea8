"""Admission control: inference requests beyond a bound in progress get an immediate 503.

Shedding load has to cost much less than serving it, or an overloaded process spends its CPU
refusing requests and serves nobody. The micro-batcher's bounded queue refuses only after a
request has been routed, its body read and validated, and its input prepared; at several times a
worker's capacity that work alone saturates the event loop (measured: accepted throughput fell
from 1,847 to 55 requests/s at 3× capacity, and even the 503s took 0.8 s). This pure-ASGI
middleware answers before any of it: while ``limit`` requests for a model are in progress in this
process, the next one gets ``503`` with ``Retry-After`` without its body being read.

The bound is per model (text classification cannot starve object detection, or the reverse),
counts requests from arrival to their last response byte, and applies only to the inference
routes listed in :data:`INFERENCE_PATHS`; everything else passes untouched. It adapts to what
the model gets through: at most ``max_wait_s`` worth of the completions measured over the last
second (Little's law: requests in progress / throughput = time in the system), never fewer than
``floor`` and never more than ``limit`` (all of ``limit`` while nothing has completed for a
second or two: an idle service takes a burst). So a model doing 30 requests/s admits about 15 at
``max_wait_s=0.5`` and its accepted requests wait about half a second at worst, while one doing
2,000/s admits up to ``limit``; the memory held by admitted requests (a detection request holds
its decoded image and a 0.9 MB uint8 tensor) is bounded the same way.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.specs import NEWSGROUPS, YOLOS

# Inference routes (exact paths) → the model whose capacity they use.
INFERENCE_PATHS: Mapping[str, str] = {
    "/prediction": NEWSGROUPS.name,
    "/prediction/batch": NEWSGROUPS.name,
    "/object-detection": YOLOS.name,
}

RejectHook = Callable[[str], None]  # told the model of every refused request
Clock = Callable[[], float]

RATE_WINDOW_S = 1.0


class ThroughputMeter:
    """Completions per second over the last full window (or the current one, if higher)."""

    def __init__(self, clock: Clock = time.monotonic, window_s: float = RATE_WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self._window_start = clock()
        self._current = 0
        self._previous = 0

    def _roll(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed >= self.window_s:
            # One window later the current count becomes the previous; after more, both age out.
            self._previous = self._current if elapsed < 2 * self.window_s else 0
            self._current = 0
            self._window_start = now - (elapsed % self.window_s)

    def completed(self) -> None:
        self._roll(self.clock())
        self._current += 1

    def rate(self) -> float | None:
        """Completions per second; None when nothing completed in the last two windows."""
        self._roll(self.clock())
        busiest = max(self._previous, self._current)
        return busiest / self.window_s if busiest else None


class AdmissionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        retry_after_s: int,
        max_wait_s: float,
        floor: int = 8,
        paths: Mapping[str, str] = INFERENCE_PATHS,
        on_reject: RejectHook | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if limit < 1 or floor < 1:
            raise ValueError("limit and floor must be at least 1")
        self.app = app
        self.limit = limit
        self.floor = min(floor, limit)
        self.max_wait_s = max_wait_s
        self.paths = dict(paths)
        self.on_reject = on_reject
        models = set(self.paths.values())
        self.in_progress = dict.fromkeys(models, 0)
        self.refused = dict.fromkeys(models, 0)
        self.meters = {model: ThroughputMeter(clock) for model in models}
        body = {"detail": "the service is overloaded, retry shortly"}
        self._body = json.dumps(body).encode()
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode("ascii")),
            (b"retry-after", str(retry_after_s).encode("ascii")),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = self.paths.get(scope["path"]) if scope["type"] == "http" else None
        if model is None:
            await self.app(scope, receive, send)
            return
        if self.in_progress[model] >= self.bound(model):
            self.refused[model] += 1
            if self.on_reject is not None:
                self.on_reject(model)
            await send(
                {"type": "http.response.start", "status": 503, "headers": list(self._headers)}
            )
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_progress[model] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress[model] -= 1
            self.meters[model].completed()

    def bound(self, model: str) -> int:
        """How many of ``model``'s requests may be in progress now (``limit`` while its
        throughput is unknown: an idle service takes a burst)."""
        rate = self.meters[model].rate()
        if rate is None:
            return self.limit
        return max(self.floor, min(self.limit, math.ceil(rate * self.max_wait_s)))
