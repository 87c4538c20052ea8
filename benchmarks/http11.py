"""A minimal HTTP/1.1 client connection over asyncio streams, for load generation.

:class:`HttpConnection` keeps one TCP connection alive across requests (one per virtual client),
sends a pre-encoded request message and reads the response completely: status line, headers, and
a body framed by ``Content-Length``, by ``Transfer-Encoding: chunked``, or by the server closing the
connection. It reconnects by itself when the server closes the connection, either announced
(``Connection: close``, HTTP/1.0 without keep-alive) or while the connection sat idle.

Failures are exceptions, never fake statuses: :class:`ServerClosedConnection` (closed before any
byte of the response), :class:`IncompleteResponse` (closed in the middle of one),
:class:`HttpProtocolError` (not HTTP), plus the OS's own ``ConnectionRefusedError``,
``ConnectionResetError``… After any failure the connection is closed, so the next request starts
on a fresh one. A request that hits a kept-alive connection the server had just closed (closed or
reset before a response head came back) is retried once on a new connection, as RFC 9112 §9.3.1
lets clients do; :attr:`HttpConnection.retries` counts those retries. A fresh connection is never
retried, so a server that fails every request still shows every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

MAX_HEAD_BYTES: Final = 64 * 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})


class HttpClientError(Exception):
    """The exchange failed below the HTTP status level."""


class ServerClosedConnection(HttpClientError):
    """The server closed the connection before sending any byte of the response."""


class IncompleteResponse(HttpClientError):
    """The server closed the connection in the middle of a response."""


class HttpProtocolError(HttpClientError):
    """The server's reply is not a well-formed HTTP/1.x response."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, body (de-chunked) and whether the connection stays open."""

    status: int
    body: bytes
    keep_alive: bool
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), if present."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A parsed status line and headers, with the framing and connection facts they imply."""

    status: int
    keep_alive: bool
    content_length: int | None
    chunked: bool
    headers: tuple[tuple[str, str], ...]


def parse_head(head: bytes) -> ResponseHead:
    """Parse a response head (status line and headers, ending with the blank line)."""
    status_line, _, header_block = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    try:
        status = int(parts[1])
    except ValueError as exc:
        raise HttpProtocolError(f"bad status code in {status_line[:80]!r}") from exc
    content_length: int | None = None
    chunked = False
    connection = b""
    headers: list[tuple[str, str]] = []
    for line in header_block.split(b"\r\n"):
        if not line:
            continue
        raw_name, separator, raw_value = line.partition(b":")
        if not separator:
            raise HttpProtocolError(f"malformed header line {line[:80]!r}")
        name = raw_name.strip().lower()
        value = raw_value.strip()
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if name == b"content-length":
            try:
                content_length = int(value)
            except ValueError as exc:
                raise HttpProtocolError(f"bad Content-Length {value[:40]!r}") from exc
            if content_length < 0:
                raise HttpProtocolError(f"negative Content-Length {content_length}")
        elif name == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
        elif name == b"connection":
            connection = value.lower()
    if parts[0] == b"HTTP/1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection
    return ResponseHead(status, keep_alive, content_length, chunked, tuple(headers))


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, de-chunked; chunk extensions and trailers are read and dropped."""
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise HttpProtocolError(f"bad chunk size line {size_line[:40]!r}") from exc
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return b"".join(chunks)
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise HttpProtocolError("chunk not followed by CRLF")
        chunks.append(chunk[:-2])


async def read_response(
    reader: asyncio.StreamReader, *, head_request: bool = False
) -> HttpResponse:
    """Read one complete response from ``reader`` (skipping interim 1xx responses)."""
    started = False
    try:
        while True:
            try:
                head_bytes = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial or started:
                    raise IncompleteResponse("connection closed inside the response head") from exc
                raise ServerClosedConnection("connection closed before the response") from exc
            started = True
            head = parse_head(head_bytes)
            if not 100 <= head.status < 200 or head.status == 101:
                break
        keep_alive = head.keep_alive
        if head_request or head.status in _NO_BODY_STATUSES or 100 <= head.status < 200:
            body = b""
        elif head.chunked:
            body = await _read_chunked(reader)
        elif head.content_length is not None:
            body = await reader.readexactly(head.content_length)
        else:
            body = await reader.read()  # delimited by the server closing the connection
            keep_alive = False
    except asyncio.IncompleteReadError as exc:
        raise IncompleteResponse("connection closed inside the response body") from exc
    except (ConnectionResetError, BrokenPipeError) as exc:
        if not started:
            raise
        raise IncompleteResponse(f"connection reset inside the response ({exc})") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpProtocolError("response head or chunk line too long") from exc
    return HttpResponse(head.status, body, keep_alive, head.headers)


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to ``host:port``, reopened whenever needed."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.opened = 0
        self.retries = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._served = 0  # responses received on the current TCP connection

    async def connect(self) -> None:
        """Open the TCP connection if it is not open (or the server has closed it)."""
        if self._reader is not None and self._reader.at_eof():
            self.close()
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEAD_BYTES
            )
            self.opened += 1

    async def request(self, message: bytes, *, head_request: bool = False) -> HttpResponse:
        """Send one complete request message and return its complete response.

        Any exception (including cancellation by a timeout) closes the connection first.
        """
        try:
            # Only a connection that already carried a response can have gone stale under us.
            reused = self._served > 0 and not (self._reader is not None and self._reader.at_eof())
            try:
                return await self._exchange(message, head_request)
            except (ServerClosedConnection, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                self.close()
                self.retries += 1
                return await self._exchange(message, head_request)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, message: bytes, head_request: bool) -> HttpResponse:
        await self.connect()
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(message)
        await writer.drain()
        response = await read_response(reader, head_request=head_request)
        self._served += 1
        if not response.keep_alive:
            self.close()
        return response

    def close(self) -> None:
        """Close the connection now (without waiting for the peer)."""
        writer, self._reader, self._writer = self._writer, None, None
        self._served = 0
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
