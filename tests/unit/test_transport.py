"""api.platform.transport: the request-head cap (431) and deadline (408, or a silent close when
nothing came) on uvicorn's real httptools protocol, fed bytes directly, with a fake transport; the
limits are a subclass's (``Quick``) so that nothing global changes."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from api.platform import transport as transport_module
from api.platform.transport import GuardedHttpToolsProtocol


class Quick(GuardedHttpToolsProtocol):
    max_header_bytes: ClassVar[int] = 1024
    header_timeout_s: ClassVar[float] = 0.1


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )


class App:
    """Reads the body, answers 200 with its length after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await asyncio.sleep(self.delay)
        body = str(size).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def connect(app: App) -> tuple[Quick, FakeTransport]:
    config = Config(app=app, http=Quick, log_config=None, lifespan="off")
    protocol = Quick(config=config, server_state=ServerState(), app_state={})
    fake = FakeTransport()
    fake.protocol = protocol
    protocol.connection_made(fake)
    return protocol, fake


def head(size: int, path: str = "/x", body: bytes = b"") -> bytes:
    """A request head of exactly ``size`` bytes (padded with a header), then ``body``."""
    start = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\nX-Pad: ".encode()
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end + body


def statuses(fake: FakeTransport) -> list[int]:
    return [
        int(line.split()[1]) for line in bytes(fake.written).split(b"\r\n") if b"HTTP/1.1" in line
    ]


def test_a_head_of_the_cap_is_served_and_one_byte_more_gets_431_and_a_close() -> None:
    async def body() -> None:
        app = App()
        protocol, fake = connect(app)
        protocol.data_received(head(1024))
        await asyncio.sleep(0.01)
        assert statuses(fake) == [200] and not fake.closed
        protocol, fake = connect(app)
        protocol.data_received(head(1025))
        await asyncio.sleep(0.01)
        assert statuses(fake) == [431] and fake.closed and app.paths == ["/x"]
        reply = bytes(fake.written).partition(b"\r\n\r\n")[2]
        assert json.loads(reply) == {"detail": "request headers over the limit of 1024 bytes"}
        assert b"connection: close" in fake.written

    asyncio.run(body())


def test_a_head_sent_in_pieces_is_counted_whole_and_nothing_past_the_cap_is_parsed() -> None:
    async def body() -> None:
        app = App()
        protocol, fake = connect(app)
        data = head(4000)
        for start in range(0, len(data), 100):
            protocol.data_received(data[start : start + 100])
        await asyncio.sleep(0.01)
        assert statuses(fake) == [431] and app.paths == []
        protocol.connection_lost(None)

    asyncio.run(body())


def test_a_body_in_the_same_read_as_its_head_is_not_counted() -> None:
    async def body() -> None:
        app = App()
        protocol, fake = connect(app)
        protocol.data_received(head(500, body=b"b" * 100_000))
        await asyncio.sleep(0.01)
        assert statuses(fake) == [200] and fake.written.endswith(b"100000")

    asyncio.run(body())


def test_pipelined_heads_each_get_the_cap() -> None:
    async def body() -> None:
        app = App()
        protocol, fake = connect(app)
        protocol.data_received(head(900, "/a") + head(900, "/b") + head(900, "/c"))
        for _ in range(3):
            await asyncio.sleep(0.01)
        assert statuses(fake) == [200, 200, 200] and app.paths == ["/a", "/b", "/c"]
        assert not fake.closed

    asyncio.run(body())


def test_a_partial_head_gets_408_at_the_deadline_even_while_bytes_trickle_in() -> None:
    async def body() -> None:
        protocol, fake = connect(App())
        protocol.data_received(b"GET / HTTP/1.1\r\n")
        for _ in range(4):  # a byte every 40 ms: the deadline is not pushed back by them
            await asyncio.sleep(0.04)
            if fake.closed:
                break
            protocol.data_received(b"X")
        assert statuses(fake) == [408] and fake.closed
        reply = bytes(fake.written).partition(b"\r\n\r\n")[2]
        assert json.loads(reply) == {"detail": "request headers not received within 0.1 s"}

    asyncio.run(body())


def test_a_connection_that_sends_nothing_is_closed_silently_at_the_deadline() -> None:
    async def body() -> None:
        _, fake = connect(App())
        await asyncio.sleep(0.05)
        assert not fake.closed
        await asyncio.sleep(0.1)
        assert fake.closed and fake.written == b""

    asyncio.run(body())


def test_a_complete_head_stops_the_clock_and_a_slow_response_is_not_cut() -> None:
    async def body() -> None:
        protocol, fake = connect(App(delay=0.3))  # three deadlines
        protocol.data_received(head(200, body=b"12345"))
        await asyncio.sleep(0.4)
        assert statuses(fake) == [200] and fake.written.endswith(b"5") and not fake.closed
        # The next request's head gets its own deadline from its first byte.
        protocol.data_received(b"GET /next HTTP/1.1\r\n")
        await asyncio.sleep(0.15)
        assert statuses(fake) == [200, 408] and fake.closed

    asyncio.run(body())


def test_a_head_timing_out_behind_a_response_in_progress_closes_after_that_response() -> None:
    async def body() -> None:
        protocol, fake = connect(App(delay=0.3))
        protocol.data_received(head(200) + b"GET /next HTTP/1.1\r\nX-Slow: ")
        await asyncio.sleep(0.2)  # the partial second head timed out during the first response
        assert statuses(fake) == [] and not fake.closed
        await asyncio.sleep(0.2)
        assert statuses(fake) == [200] and fake.closed  # finished, then closed, no 408 mixed in

    asyncio.run(body())


def test_configure_sets_the_process_limits_and_refuses_nonsense() -> None:
    saved = (GuardedHttpToolsProtocol.max_header_bytes, GuardedHttpToolsProtocol.header_timeout_s)
    try:
        transport_module.configure(max_header_bytes=2048, header_timeout_s=3.0)
        assert GuardedHttpToolsProtocol.max_header_bytes == 2048
        assert GuardedHttpToolsProtocol.header_timeout_s == 3.0
        with pytest.raises(ValueError, match="must be positive"):
            transport_module.configure(max_header_bytes=0, header_timeout_s=3.0)
    finally:
        transport_module.configure(max_header_bytes=saved[0], header_timeout_s=saved[1])


def test_a_body_left_unread_after_the_answer_is_drained_only_until_the_deadline() -> None:
    async def body() -> None:
        protocol, fake = connect(App())
        # An app that answers at once without reading; the client declared a huge body.
        protocol.app = Unread()
        protocol.data_received(
            b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\nab"
        )
        await asyncio.sleep(0.01)
        assert statuses(fake) == [413] and not fake.closed
        for _ in range(4):  # a byte every 40 ms does not keep the connection
            await asyncio.sleep(0.04)
            if fake.closed:
                break
            protocol.data_received(b"c")
        assert fake.closed and statuses(fake) == [413]

    asyncio.run(body())


class Unread:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
