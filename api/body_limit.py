"""Request body size limits: 413 without reading (or buffering) what is over the limit.

A pure-ASGI middleware that wraps ``receive``: a body whose ``Content-Length`` is over the limit
fails at the app's first read, before a byte of it is read; a body without one (chunked) fails
as soon as the bytes read pass the limit. The failure is
:class:`api.errors.RequestBodyTooLargeError`, an ``HTTPException``, because FastAPI turns any
other exception raised while it reads a body into a 400; the response (``{"detail": ...}``,
413) comes from the app's error handlers, so it carries the usual headers. A route that never
reads its body never fails.

Starlette's own ``max_body_size`` is not used: it replaces every response to an over-long
``Content-Length`` with a plain-text 413 from outside the app's middleware (no JSON body, no
request id or security headers).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import RequestBodyTooLargeError


def declared_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """``limit`` bytes per request body; ``path_limits`` overrides it for exact paths."""

    def __init__(self, app: ASGIApp, limit: int, path_limits: Mapping[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.path_limits = dict(path_limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.limit)
        declared = declared_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise RequestBodyTooLargeError(limit, declared)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestBodyTooLargeError(limit)
            return message

        await self.app(scope, limited_receive, send)
