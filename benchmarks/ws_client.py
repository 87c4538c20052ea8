"""A minimal WebSocket client (RFC 6455) for the streams benchmark: cheap to send frames with.

The benchmark's client shares the machine with the server it measures, so every core-second it
spends is taken from the model. The ``websockets`` package's client spent about 250 µs of CPU
per 50 KB camera frame here (asyncio framing and buffering in Python); this one builds a frame
header with ``struct`` and masks the payload as ``uint32`` words with numpy, then hands one
``bytes`` to the transport: about a tenth of that (figures in benchmarks/README.md).

What it does: the opening handshake (checking ``Sec-WebSocket-Accept``), masked text and
binary messages from the client, unmasked text and binary messages from the server (fragments
joined), pong replies to pings, and the closing handshake. What it leaves out: extensions
(no permessage-deflate: camera frames are JPEG and do not compress) and subprotocols.

Each frame gets a fresh random masking key, as the RFC requires of clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CLOSE_NORMAL = 1000
CLOSE_NO_STATUS = 1005  # the close frame carried no code
CLOSE_ABNORMAL = 1006  # the connection ended without a close frame
MAX_HANDSHAKE_BYTES = 64 * 1024


class WebSocketError(Exception):
    """The server broke the protocol or refused the connection."""


class HandshakeRefused(WebSocketError):
    """The server answered the opening handshake with something other than 101."""

    def __init__(self, status: int, head: str) -> None:
        super().__init__(f"WebSocket handshake refused: HTTP {status}")
        self.status = status
        self.head = head


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    secure: bool
    target: str  # path and query, as sent in the request line

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, secure, target)

    @property
    def host_header(self) -> str:
        default = 443 if self.secure else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def accept_value(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + ACCEPT_GUID).digest()).decode()


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (RFC 6455 §5.3); masking twice unmasks."""
    size = len(payload)
    padded = payload + b"\0" * (-size % 4)
    words = np.frombuffer(padded, dtype=np.uint32) ^ np.frombuffer(key, dtype=np.uint32)[0]
    return words.tobytes()[:size]


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final, masked frame as a client sends it."""
    key = os.urandom(4) if key is None else key
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + key + mask(payload, key)


def _close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")[:123]


class RawWebSocket:
    """One client connection. Use :func:`connect`; iterate :meth:`messages` for what arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.close_code: int | None = None
        self.close_reason = ""
        self._close_sent = False

    async def send(self, message: str | bytes) -> None:
        """A text (``str``) or binary (``bytes``) message, waiting only if the socket is full."""
        if self._close_sent:
            raise WebSocketError("the connection is closing")
        if isinstance(message, str):
            self._writer.write(client_frame(OP_TEXT, message.encode("utf-8")))
        else:
            self._writer.write(client_frame(OP_BINARY, bytes(message)))
        transport = self._writer.transport
        if transport.get_write_buffer_size() > 0:
            await self._writer.drain()

    async def messages(self) -> AsyncIterator[str | bytes]:
        """Messages until the server closes (pings are answered here, unseen by the caller)."""
        pieces: list[bytes] = []
        message_opcode = OP_TEXT
        while True:
            try:
                opcode, final, payload = await self._read_frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                if self.close_code is None:
                    self.close_code = CLOSE_ABNORMAL
                return
            if opcode == OP_CLOSE:
                self._on_close(payload)
                return
            if opcode == OP_PING:
                self._writer.write(client_frame(OP_PONG, payload))
                continue
            if opcode == OP_PONG:
                continue
            if opcode in (OP_TEXT, OP_BINARY):
                pieces, message_opcode = [payload], opcode
            elif opcode == OP_CONTINUATION and pieces:
                pieces.append(payload)
            else:
                raise WebSocketError(f"unexpected frame opcode {opcode:#x}")
            if final:
                data = b"".join(pieces)
                pieces = []
                yield data.decode("utf-8") if message_opcode == OP_TEXT else data

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        first, second = await self._reader.readexactly(2)
        if second & 0x80:
            raise WebSocketError("the server sent a masked frame")
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self._reader.readexactly(8))
        payload = await self._reader.readexactly(size) if size else b""
        return first & 0x0F, bool(first & 0x80), payload

    def _on_close(self, payload: bytes) -> None:
        if len(payload) >= 2:
            (self.close_code,) = struct.unpack("!H", payload[:2])
            self.close_reason = payload[2:].decode("utf-8", "replace")
        else:
            self.close_code = CLOSE_NO_STATUS
        if not self._close_sent:  # echo the close (RFC 6455 §5.5.1)
            self._close_sent = True
            self._writer.write(client_frame(OP_CLOSE, payload[:2]))

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "", timeout: float = 2.0) -> None:
        """The closing handshake: send a close, wait (bounded) for the server's, drop the TCP."""
        try:
            if not self._close_sent and not self._writer.is_closing():
                self._close_sent = True
                self._writer.write(client_frame(OP_CLOSE, _close_payload(code, reason)))
                with contextlib.suppress(TimeoutError, WebSocketError):
                    async with asyncio.timeout(timeout):
                        async for _ in self.messages():
                            pass
        finally:
            self._writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await self._writer.wait_closed()


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    endpoint: Endpoint,
    headers: Mapping[str, str],
) -> None:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {endpoint.target} HTTP/1.1",
        f"Host: {endpoint.host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as error:
        raise WebSocketError("the handshake response's head is too long") from error
    except asyncio.IncompleteReadError as error:
        raise WebSocketError("the server closed the connection during the handshake") from error
    text = head.decode("latin-1")
    status_line, *header_lines = text.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise WebSocketError(f"not an HTTP response: {status_line!r}")
    if int(parts[1]) != 101:
        raise HandshakeRefused(int(parts[1]), text)
    answered = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        answered[name.strip().lower()] = value.strip()
    if answered.get("sec-websocket-accept") != accept_value(key):
        raise WebSocketError("the server's Sec-WebSocket-Accept does not match the key")


@contextlib.asynccontextmanager
async def connect(
    url: str, headers: Mapping[str, str] | None = None, *, timeout: float = 10.0
) -> AsyncIterator[RawWebSocket]:
    """An open connection to ``url`` (``ws://`` or ``wss://``), closed on leaving the block."""
    endpoint = Endpoint.parse(url)
    context = ssl.create_default_context() if endpoint.secure else None
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            endpoint.host, endpoint.port, ssl=context, limit=MAX_HANDSHAKE_BYTES
        )
        try:
            await _handshake(reader, writer, endpoint, headers or {})
        except BaseException:
            writer.close()
            raise
    websocket = RawWebSocket(reader, writer)
    try:
        yield websocket
    finally:
        await websocket.close()


__all__ = [
    "HandshakeRefused",
    "RawWebSocket",
    "WebSocketError",
    "accept_value",
    "client_frame",
    "connect",
    "mask",
]
