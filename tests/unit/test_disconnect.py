"""api.inference.disconnect: a client that goes away cancels its work (and frees its queue slot)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.inference.disconnect import ClientDisconnectedError, unless_disconnected


class FakeRequest:
    """Just enough of a Starlette request: ``receive`` yields the given ASGI messages."""

    def __init__(self, disconnect_after: float | None) -> None:
        self.disconnect_after = disconnect_after

    async def receive(self) -> dict[str, Any]:
        if self.disconnect_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.disconnect_after or 0)
        return {"type": "http.disconnect"}


def test_result_is_returned_while_the_client_stays() -> None:
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    async def run() -> str:
        return await unless_disconnected(FakeRequest(None), work())  # type: ignore[arg-type]

    assert asyncio.run(run()) == "done"


def test_disconnect_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def run() -> None:
        with pytest.raises(ClientDisconnectedError):
            await unless_disconnected(FakeRequest(0.01), work())  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert cancelled.is_set()
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    asyncio.run(run())


def test_errors_of_the_work_propagate() -> None:
    async def work() -> str:
        raise ValueError("boom")

    async def run() -> None:
        with pytest.raises(ValueError, match="boom"):
            await unless_disconnected(FakeRequest(None), work())  # type: ignore[arg-type]

    asyncio.run(run())
