"""Request body limits: 413 without reading (or buffering) what is over the size limit, and 408
for a body that has not arrived within the time limit.

A pure-ASGI middleware that wraps ``receive``:

* Size. A body whose ``Content-Length`` is over the limit fails at the app's first read, before a
  byte of it is read; a body without one (chunked) fails as soon as the bytes read pass the
  limit. The failure is :class:`api.errors.RequestBodyTooLargeError`.
* Time. The whole body must arrive within ``timeout_s`` of the request's headers (a slow client
  would otherwise hold its connection, and whatever the route holds while it reads, for as long
  as it likes): a read still waiting then fails with :class:`RequestBodyTimeoutError` (408, with
  ``Connection: close``, so the server closes the connection after the answer). Once the body is
  complete, ``receive`` is passed through without a deadline (``api/inference/disconnect.py`` waits
  on it for ``http.disconnect`` as long as the request runs). The inference routes' bodies are read
  by ``api/inference/admission.py`` within the same deadline, before this middleware sees them. All
  deadlines share one timer (``api/platform/deadlines.py``).

Both failures are ``HTTPException``\\ s, because FastAPI turns any other exception raised while it
reads a body into a 400; the response (``{"detail": ...}``) comes from the app's error handlers,
so it carries the usual headers. A route that never reads its body never fails.

Starlette's own ``max_body_size`` is not used: it replaces every response to an over-long
``Content-Length`` with a plain-text 413 from outside the app's middleware (no JSON body, no
request id or security headers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import RequestBodyTooLargeError
from api.platform.deadlines import Deadlines


class RequestBodyTimeoutError(HTTPException):
    """The request body did not arrive within its deadline (408; the connection is closed)."""

    def __init__(self, timeout_s: float) -> None:
        detail = f"request body not received within {timeout_s:g} s"
        super().__init__(408, detail, headers={"Connection": "close"})


@dataclass(frozen=True)
class BodyLimits:
    """``limit`` bytes per request body (``path_limits`` overrides it for exact paths), to be
    received within ``timeout_s`` of the request's headers."""

    limit: int
    timeout_s: float
    path_limits: Mapping[str, int] = field(default_factory=dict)

    def for_path(self, path: str) -> int:
        return self.path_limits.get(path, self.limit)


def declared_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyReader:
    """``receive()`` within a deadline: :class:`RequestBodyTimeoutError` once the event loop's
    clock passes it. One per middleware, for all its requests (one timer for all of them)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._reading: Deadlines[asyncio.Task[Any]] = Deadlines(self._too_late)
        self._late: set[asyncio.Task[Any]] = set()

    def deadline(self) -> float:
        """The deadline of a body whose headers came now."""
        return asyncio.get_running_loop().time() + self.timeout_s

    async def receive(self, receive: Receive, deadline: float) -> Message:
        task = asyncio.current_task()
        assert task is not None
        self._reading.set(task, deadline)
        try:
            return await receive()
        except asyncio.CancelledError:
            if task not in self._late:
                raise
            self._late.discard(task)
            task.uncancel()
            raise RequestBodyTimeoutError(self.timeout_s) from None
        finally:
            self._reading.discard(task)

    def _too_late(self, task: asyncio.Task[Any]) -> None:
        self._late.add(task)
        task.cancel()


class BodyLimitMiddleware:
    """``read_before``: paths whose bodies an outer middleware reads whole, within the same
    deadline, before this one sees them (api/inference/admission.py): only their size is checked
    here."""

    def __init__(self, app: ASGIApp, limits: BodyLimits, read_before: Collection[str] = ()) -> None:
        self.app = app
        self.limits = limits
        self.read_before = frozenset(read_before)
        self.reader = BodyReader(limits.timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.limits.for_path(path)
        declared = declared_length(scope)
        received = 0
        complete = path in self.read_before  # no deadline to watch
        deadline = 0.0 if complete else self.reader.deadline()

        async def limited_receive() -> Message:
            nonlocal received, complete
            if declared is not None and declared > limit:
                raise RequestBodyTooLargeError(limit, declared)
            if complete:
                message = await receive()
            else:
                message = await self.reader.receive(receive, deadline)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestBodyTooLargeError(limit)
                complete = complete or not message.get("more_body", False)
            else:
                complete = True  # http.disconnect: nothing more will come
            return message

        await self.app(scope, limited_receive, send)
