"""Admission control: inference requests beyond a bound in progress get an immediate 503.

Shedding load has to cost much less than serving it, or an overloaded process spends its CPU
refusing requests and serves nobody. The micro-batcher's bounded queue refuses only after a
request has been routed, its body read and validated, and its input prepared; at several times a
worker's capacity that work alone saturates the event loop (measured: accepted throughput fell
from 1,847 to 55 requests/s at 3× capacity, and even the 503s took 0.8 s). This pure-ASGI
middleware answers before any of it: while ``limit`` requests for a model are in progress in this
process, the next one gets ``503`` with ``Retry-After`` without its body being read.

The bound is per model (text classification cannot starve object detection, or the reverse),
counts requests from their complete body to their last response byte, and applies only to the
inference routes listed in :data:`INFERENCE_PATHS`; everything else passes untouched. It adapts
to what the model gets through: at most ``max_wait_s`` worth of the completions measured over
the last second (Little's law: requests in progress / throughput = time in the system), never
fewer than ``floor`` and never more than ``limit`` (all of ``limit`` while nothing has completed
for a second or two: an idle service takes a burst). So a model doing 30 requests/s admits about
15 at ``max_wait_s=0.5`` and its accepted requests wait about half a second at worst, while one
doing 2,000/s admits up to ``limit``; the memory held by admitted requests (a detection request
holds its decoded image and a 0.9 MB uint8 tensor) is bounded the same way.

Slow bodies. A request's body is read before it takes a slot (slots count requests the model
works on, not clients taking their time to send one; credentials are checked later, by the
app): only the cheap refusal above comes first. The whole body is read, up to the route's limit
(:class:`api.platform.body_limit.BodyLimits`) and within its deadline, holding no slot; a body not
complete by then gets ``408`` (JSON ``detail``, ``Connection: close``). Then the bound is checked
again, the slot taken and the messages handed to the app as they came (no copy); after them,
``receive`` is the server's own, so ``api/inference/disconnect.py`` still sees ``http.disconnect``.
Nothing
over the limit is buffered: a ``Content-Length`` over it goes to the app unread, a chunked body
is cut one byte past it, and the app's body-limit middleware answers 413 either way.

Per client. At most ``max_receiving_per_client`` bodies are read at once for one client address
(the ASGI scope's client: behind a proxy, the proxy's, unless uvicorn's ``--forwarded-allow-ips``
names it, see ``api/accounts/login_limits.py``; IPv6 per /64); beyond it ``503`` with
``Retry-After``, so
one address cannot keep an unbounded number of half-sent bodies (each up to its route's limit)
in memory. 503 and not 429: it is the reading stage's capacity that is spent, not a rate the
client exceeded, and behind a proxy that does not forward addresses every client shares one.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.accounts.login_limits import UNKNOWN_CLIENT, ip_bucket
from api.platform.body_limit import BodyLimits, BodyReader, RequestBodyTimeoutError, declared_length
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

Response = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, JSON body


def _response(status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> Response:
    body = json.dumps({"detail": detail}).encode()
    length = (b"content-length", str(len(body)).encode("ascii"))
    return status, [(b"content-type", b"application/json"), length, *headers], body


async def _send(send: Send, response: Response) -> None:
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def client_address(scope: Scope) -> str:
    """The address a client's bodies are counted under: the scope's client host (IPv6 per
    /64, as the login limits count it)."""
    client = scope.get("client")
    host = client[0] if client else ""
    if not host:
        return UNKNOWN_CLIENT
    return ip_bucket(host) if ":" in host else host


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
        body_limits: BodyLimits,
        max_receiving_per_client: int = 64,
        floor: int = 8,
        paths: Mapping[str, str] = INFERENCE_PATHS,
        on_reject: RejectHook | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if limit < 1 or floor < 1 or max_receiving_per_client < 1:
            raise ValueError("limit, floor and max_receiving_per_client must be at least 1")
        self.app = app
        self.limit = limit
        self.floor = min(floor, limit)
        self.max_wait_s = max_wait_s
        self.body_limits = body_limits
        self.reader = BodyReader(body_limits.timeout_s)
        self.max_receiving_per_client = max_receiving_per_client
        self.paths = dict(paths)
        self.on_reject = on_reject
        models = set(self.paths.values())
        self.in_progress = dict.fromkeys(models, 0)
        self.refused = dict.fromkeys(models, 0)
        self.meters = {model: ThroughputMeter(clock) for model in models}
        self.receiving: dict[str, int] = {}  # client address → bodies being read
        self._changes = 0  # slots taken or given back, ever
        retry_after = (b"retry-after", str(retry_after_s).encode("ascii"))
        self._overloaded = _response(503, "the service is overloaded, retry shortly", [retry_after])
        self._busy_client = _response(
            503,
            "too many request bodies are being received from this address, retry shortly",
            [retry_after],
        )
        self._too_slow = _response(
            408,
            RequestBodyTimeoutError(body_limits.timeout_s).detail,
            [(b"connection", b"close")],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = self.paths.get(scope["path"]) if scope["type"] == "http" else None
        if model is None:
            await self.app(scope, receive, send)
            return
        if self.in_progress[model] >= self.bound(model):
            await self._refuse(model, self._overloaded, send)  # cheap: the body is not read
            return
        changes = self._changes
        limit = self.body_limits.for_path(scope["path"])
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await self.app(scope, receive, send)  # refused (413) by the app, unread
            return
        client = client_address(scope)
        receiving = self.receiving.get(client, 0)
        if receiving >= self.max_receiving_per_client:
            await self._refuse(model, self._busy_client, send)
            return
        self.receiving[client] = receiving + 1
        try:
            body = await self._read_body(receive, limit)
        except RequestBodyTimeoutError:
            await _send(send, self._too_slow)
            return
        finally:
            remaining = self.receiving[client] - 1
            if remaining:
                self.receiving[client] = remaining
            else:
                del self.receiving[client]
        if body is None:
            return  # the client left before sending all of it: nobody to answer
        # Checked again if slots were taken or given back while the body came (a body that was
        # there at once leaves no time for that).
        if self._changes != changes and self.in_progress[model] >= self.bound(model):
            await self._refuse(model, self._overloaded, send)
            return

        async def replay() -> Message:
            return body.popleft() if body else await receive()

        self.in_progress[model] += 1
        self._changes += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.in_progress[model] -= 1
            self._changes += 1
            self.meters[model].completed()

    async def _read_body(self, receive: Receive, limit: int) -> deque[Message] | None:
        """The body's messages, as received, up to the last one or to ``limit`` + 1 bytes
        (the last one cut there); None if the client disconnected. Raises
        :class:`RequestBodyTimeoutError` past the deadline."""
        deadline = self.reader.deadline()
        messages: deque[Message] = deque()
        size = 0
        while True:
            message = await self.reader.receive(receive, deadline)
            if message["type"] != "http.request":
                return None
            messages.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                over = size - (limit + 1)
                if over:
                    message["body"] = message["body"][:-over]
                return messages
            if not message.get("more_body", False):
                return messages

    async def _refuse(self, model: str, response: Response, send: Send) -> None:
        self.refused[model] += 1
        if self.on_reject is not None:
            self.on_reject(model)
        await _send(send, response)

    def bound(self, model: str) -> int:
        """How many of ``model``'s requests may be in progress now (``limit`` while its
        throughput is unknown: an idle service takes a burst)."""
        rate = self.meters[model].rate()
        if rate is None:
            return self.limit
        return max(self.floor, min(self.limit, math.ceil(rate * self.max_wait_s)))
