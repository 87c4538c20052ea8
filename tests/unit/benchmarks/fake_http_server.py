"""A tiny HTTP/1.1 server on raw asyncio streams, running its own event loop in a thread.

Its behaviour is a function ``ReceivedRequest -> Reply``: the status, body, artificial delay and
framing (Content-Length, chunked, delimited by close) of each response, and whether the server
then closes the connection (announced, silently, or in the middle of the body). It records every
request it received, the connections it accepted and the peak number of requests in progress.
``serial=True`` serves one request at a time across all connections (a single-worker model that
queues), so a known service time gives a known queueing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection_id: int
    arrived: float


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"ok":true}'
    delay: float = 0.0
    chunked: bool = False
    close: bool = False  # "Connection: close", then close
    silent_close: bool = False  # close right after the response, without announcing it
    truncate: bool = False  # announce the whole body, send half of it, close
    no_length: bool = False  # no Content-Length, HTTP/1.0: the body ends when the server closes
    abort: bool = False  # close without sending anything
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers


Behaviour = Callable[[ReceivedRequest], Reply]


def json_directed(request: ReceivedRequest) -> Reply:
    """The request's JSON body says what to do: ``{"status": 503, "delay_ms": 20}``."""
    spec = json.loads(request.body) if request.body else {}
    return Reply(
        status=int(spec.get("status", 200)),
        delay=float(spec.get("delay_ms", 0.0)) / 1000.0,
        body=json.dumps({"echo": spec}).encode(),
    )


def constant(reply: Reply) -> Behaviour:
    return lambda _request: reply


def _chunked(body: bytes) -> bytes:
    third = max(1, len(body) // 3)
    pieces = [body[i : i + third] for i in range(0, len(body), third)]
    out = [f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n" for piece in pieces]
    out.append(b"0\r\nX-Trailer: done\r\n\r\n")
    return b"".join(out)


def encode_reply(reply: Reply) -> bytes:
    reason = HTTPStatus(reply.status).phrase
    version = "HTTP/1.0" if reply.no_length else "HTTP/1.1"
    lines = [f"{version} {reply.status} {reason}", "Content-Type: application/json"]
    lines.extend(f"{name}: {value}" for name, value in reply.headers)
    if reply.chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = _chunked(reply.body)
    elif reply.no_length:
        payload = reply.body
    else:
        lines.append(f"Content-Length: {len(reply.body)}")
        payload = reply.body[: len(reply.body) // 2] if reply.truncate else reply.body
    if reply.close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class _Stats:
    received: list[ReceivedRequest] = field(default_factory=list)
    responded: list[float] = field(default_factory=list)  # perf_counter() after each reply
    connections: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0


class FakeHttpServer:
    """Serves ``behaviour`` on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self, behaviour: Behaviour, *, serial: bool = False) -> None:
        self.behaviour = behaviour
        self.serial = serial
        self.stats = _Stats()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._lock: asyncio.Lock | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[ReceivedRequest]:
        return self.stats.received

    def __enter__(self) -> FakeHttpServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=5)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _start(self) -> None:
        self._lock = asyncio.Lock()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        connection_id = self.stats.connections
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                request = await self._read_request(reader, connection_id)
                if request is None:
                    return
                reply = await self._respond(request)
                if reply.abort:
                    return
                writer.write(encode_reply(reply))
                await writer.drain()
                self.stats.responded.append(time.perf_counter())
                if reply.close or reply.silent_close or reply.truncate or reply.no_length:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return  # stopping: end quietly (3.11's start_server would log a cancelled handler)
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, request: ReceivedRequest) -> Reply:
        self.stats.received.append(request)
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        try:
            reply = self.behaviour(request)
            if self.serial:
                assert self._lock is not None
                async with self._lock:
                    await asyncio.sleep(reply.delay)
            elif reply.delay:
                await asyncio.sleep(reply.delay)
            return reply
        finally:
            self.stats.in_flight -= 1

    @staticmethod
    async def _read_request(
        reader: asyncio.StreamReader, connection_id: int
    ) -> ReceivedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        return ReceivedRequest(method, target, headers, body, connection_id, time.perf_counter())
