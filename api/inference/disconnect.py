"""Stop working for clients that are gone, so they do not hold a queue slot."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

from api.errors import ApiError

T = TypeVar("T")


class ClientDisconnectedError(ApiError):
    """The client closed the connection before the answer was ready (nginx's 499)."""

    status_code = 499


async def _disconnected(request: Request) -> None:
    # The body has been read: the next ASGI message is the disconnect (or the end of the cycle).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``; cancel it (freeing its batcher slot) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientDisconnectedError("the client disconnected before the result was ready")
