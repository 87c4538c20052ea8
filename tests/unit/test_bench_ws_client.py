"""benchmarks.ws_client against the ``websockets`` package's server (an independent RFC 6455
implementation) and, for the handshake's failure cases, a raw asyncio server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from benchmarks.ws_client import (
    Endpoint,
    HandshakeRefused,
    WebSocketError,
    accept_value,
    client_frame,
    connect,
    mask,
)

Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler, **options: object) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, max_size=None, **options) as running:  # type: ignore[arg-type]
        port = next(iter(running.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/object-detection?token=abc"


def _reference_mask(payload: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 1001])
def test_mask_is_the_rfc_xor_and_undoes_itself(size: int) -> None:
    payload, key = os.urandom(size), os.urandom(4)
    masked = mask(payload, key)
    assert masked == _reference_mask(payload, key)
    assert mask(masked, key) == payload


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (125, b"\x82\xfd"),
        (126, b"\x82\xfe\x00\x7e"),
        (65536, b"\x82\xff" + (65536).to_bytes(8, "big")),
    ],
    ids=["7-bit", "16-bit", "64-bit"],
)
def test_client_frames_are_final_masked_and_carry_the_length(size: int, header: bytes) -> None:
    key = b"\x01\x02\x03\x04"
    payload = os.urandom(size)
    frame = client_frame(0x2, payload, key)
    assert frame.startswith(header + key)
    assert mask(frame[len(header) + 4 :], key) == payload


def test_a_fresh_masking_key_for_every_frame() -> None:
    keys = {client_frame(0x2, b"same payload")[2:6] for _ in range(20)}
    assert len(keys) > 1


def test_accept_value_is_the_rfc_example() -> None:
    # The handshake example of RFC 6455, section 1.3.
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_endpoint_parses_ws_urls() -> None:
    assert Endpoint.parse("ws://example.org/a?b=1") == Endpoint("example.org", 80, False, "/a?b=1")
    assert Endpoint.parse("wss://example.org") == Endpoint("example.org", 443, True, "/")
    assert Endpoint.parse("ws://127.0.0.1:8000/x").host_header == "127.0.0.1:8000"
    assert Endpoint.parse("ws://[::1]:9/").host_header == "[::1]:9"
    with pytest.raises(ValueError, match="not a ws"):
        Endpoint.parse("http://example.org/")


def test_messages_of_every_length_go_both_ways_intact() -> None:
    async def echo(websocket: ServerConnection) -> None:
        async for message in websocket:
            await websocket.send(message)

    sizes = [0, 125, 126, 65535, 65536, 300_000]
    payloads: list[str | bytes] = [os.urandom(size) for size in sizes] + ["héllo", ""]

    async def main() -> list[str | bytes]:
        async with server(echo) as url, connect(url) as websocket:
            received = []
            incoming = websocket.messages()
            for payload in payloads:
                await websocket.send(payload)
                received.append(await anext(incoming))
            return received

    assert asyncio.run(main()) == payloads


def test_fragmented_messages_are_joined_and_pings_answered() -> None:
    pongs: list[bool] = []

    async def handler(websocket: ServerConnection) -> None:
        await websocket.send([b"ab", b"cd", b"ef"])  # three frames: binary, continuation ×2
        waiter = await websocket.ping(b"probe")
        await asyncio.wait_for(waiter, 5)
        pongs.append(True)
        await websocket.send(["frag", "mented"])

    async def main() -> list[str | bytes]:
        async with server(handler) as url, connect(url) as websocket:
            return [message async for message in websocket.messages()]

    assert asyncio.run(main()) == [b"abcdef", "fragmented"]
    assert pongs == [True]


def test_the_server_close_code_and_reason_are_kept() -> None:
    async def handler(websocket: ServerConnection) -> None:
        await websocket.send('{"error": "bad"}')
        await websocket.close(1008, "flood: over 240 messages/s")

    async def main() -> tuple[list[str | bytes], int | None, str]:
        async with server(handler) as url, connect(url) as websocket:
            received = [message async for message in websocket.messages()]
            return received, websocket.close_code, websocket.close_reason

    assert asyncio.run(main()) == (['{"error": "bad"}'], 1008, "flood: over 240 messages/s")


def test_the_client_closes_with_1000_and_sends_its_headers() -> None:
    seen: dict[str, object] = {}

    async def handler(websocket: ServerConnection) -> None:
        assert websocket.request is not None
        seen["path"] = websocket.request.path
        seen["authorization"] = websocket.request.headers.get("Authorization")
        await websocket.wait_closed()
        seen["code"] = websocket.close_code

    async def main() -> None:
        async with server(handler) as url, connect(url, {"Authorization": "Bearer t"}) as websocket:
            await websocket.send("hello")

    asyncio.run(main())
    assert seen == {
        "path": "/object-detection?token=abc",
        "authorization": "Bearer t",
        "code": 1000,
    }


def test_a_refused_handshake_raises_with_the_status() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many streams\n")

    async def never(websocket: ServerConnection) -> None:
        raise AssertionError("the handshake was refused")

    async def main() -> None:
        async with server(never, process_request=refuse) as url, connect(url):
            pass

    with pytest.raises(HandshakeRefused) as refused:
        asyncio.run(main())
    assert refused.value.status == 503


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 101 Switching",  # then the connection ends
    ],
    ids=["wrong-accept", "not-http", "cut-short"],
)
def test_a_broken_handshake_answer_is_an_error(answer: bytes) -> None:
    async def main() -> None:
        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        listener = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with listener, connect(f"ws://127.0.0.1:{port}/"):
            pass

    with pytest.raises(WebSocketError):
        asyncio.run(main())
