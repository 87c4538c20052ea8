"""api.platform.body_limit: the size limit (413 before reading what is over it) and the body
deadline
(408 at the app's read, with ``Connection: close``; none once the body is complete), with fake
ASGI messages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.exceptions import HTTPException

from api.errors import RequestBodyTooLargeError
from api.platform.body_limit import BodyLimitMiddleware, BodyLimits, RequestBodyTimeoutError
from tests.helpers.asgi import ScriptedReceive


async def read_all(receive: Any, then_disconnect: bool = False) -> list[dict[str, Any]]:
    messages = [await receive()]
    while messages[-1].get("more_body"):
        messages.append(await receive())
    if then_disconnect:
        messages.append(await receive())
    return messages


def run(
    server: ScriptedReceive,
    limits: BodyLimits,
    path: str = "/posts",
    then_disconnect: bool = False,
    **h: str,
) -> list[dict[str, Any]]:
    got: list[list[dict[str, Any]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append(await read_all(receive, then_disconnect))

    headers = [(k.replace("_", "-").encode(), v.encode()) for k, v in h.items()]
    middleware = BodyLimitMiddleware(app, limits)
    asyncio.run(middleware({"type": "http", "path": path, "headers": headers}, server, None))
    return got[0]


LIMITS = BodyLimits(limit=10, timeout_s=5.0, path_limits={"/upload": 100})


def test_a_declared_length_over_the_limit_fails_before_anything_is_read() -> None:
    server = ScriptedReceive(b"x" * 11)
    with pytest.raises(RequestBodyTooLargeError) as refused:
        run(server, LIMITS, content_length="11")
    assert refused.value.status_code == 413 and server.calls == 0
    assert (
        len(run(ScriptedReceive(b"x" * 11), LIMITS, "/upload", content_length="11")[0]["body"])
        == 11
    )


def test_a_chunked_body_fails_once_past_the_limit() -> None:
    server = ScriptedReceive(b"x" * 6, b"x" * 6, b"x" * 6)
    with pytest.raises(RequestBodyTooLargeError, match="over the limit of 10 bytes"):
        run(server, LIMITS)
    assert server.calls == 2


def test_a_body_not_complete_within_the_deadline_fails_with_408_and_connection_close() -> None:
    server = ScriptedReceive(b"{", (b"", asyncio.Event()))  # the rest never comes
    limits = BodyLimits(limit=10, timeout_s=0.05)
    with pytest.raises(RequestBodyTimeoutError) as late:
        run(server, limits)
    assert isinstance(late.value, HTTPException)  # FastAPI answers it, not a 400
    assert late.value.status_code == 408 and late.value.headers == {"Connection": "close"}
    assert late.value.detail == "request body not received within 0.05 s"


def test_the_deadline_is_for_the_whole_body_not_each_read() -> None:
    async def body() -> None:
        reads = 0

        async def trickle() -> dict[str, Any]:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.02)  # each read well within the deadline
            return {"type": "http.request", "body": b"x", "more_body": True}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await read_all(receive)

        middleware = BodyLimitMiddleware(app, BodyLimits(limit=1000, timeout_s=0.1))
        with pytest.raises(RequestBodyTimeoutError):
            await middleware({"type": "http", "path": "/posts", "headers": []}, trickle, None)
        assert 3 <= reads <= 7

    asyncio.run(body())


def test_once_the_body_is_complete_the_disconnect_is_awaited_without_a_deadline() -> None:
    async def body() -> None:
        server = ScriptedReceive(b"{}")
        got: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            got.extend(await read_all(receive, then_disconnect=True))

        middleware = BodyLimitMiddleware(app, BodyLimits(limit=10, timeout_s=0.05))
        task = asyncio.create_task(
            middleware({"type": "http", "path": "/posts", "headers": []}, server, None)
        )
        await asyncio.sleep(0.2)  # four times the deadline: still waiting, no 408
        assert not task.done()
        server.gone.set()
        await task
        assert [m["type"] for m in got] == ["http.request", "http.disconnect"]

    asyncio.run(body())


def test_websockets_pass_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(receive)

    middleware = BodyLimitMiddleware(app, LIMITS)
    marker = object()
    asyncio.run(middleware({"type": "websocket", "path": "/x", "headers": []}, marker, None))
    assert seen == [marker]
