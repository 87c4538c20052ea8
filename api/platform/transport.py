"""uvicorn's httptools protocol with a size cap and a deadline on request headers.

uvicorn bounds neither with httptools (only its h11 protocol has a size limit): a client could
send an endless header block, which the parser accumulates in memory (4 sockets sending 100 MB
header blocks added ~350 MB), or keep a connection with a partial head open for ever.
:class:`GuardedHttpToolsProtocol` (``--http=api.platform.transport:GuardedHttpToolsProtocol``, set
in ``api/platform/uvicorn_options.py``) adds both:

* Size. The bytes of a request's head (request line and headers) are counted as they are fed
  to the parser; a head not complete within ``max_header_bytes`` gets ``431`` and the connection
  is closed, so the parser never holds more than that (plus one read's worth when a pipelined
  head follows a body in the same read).
* Time. A connection must send a complete head within ``header_timeout_s`` of opening, and each
  later request within ``header_timeout_s`` of its first byte; otherwise ``408`` (or, when not a
  byte of the head had come, a silent close, like an idle keep-alive connection) and the
  connection is closed. Idle keep-alive connections stay uvicorn's (``--timeout-keep-alive``).
  The app's body reads have their own deadline (``api/platform/body_limit.py``); a body the app
  answered without reading (a 413 on its ``Content-Length``, a 404) is drained for at most
  ``header_timeout_s`` after the answer, then the connection is closed.

Both answers are ``{"detail": ...}`` with ``Connection: close``. If the previous response on the
connection is still being produced (a pipelined head), it is finished first and the connection
then closed, without an answer to the refused head. WebSocket handshakes are heads like any
other; once one is complete the connection is handed to the WebSocket protocol untouched.

uvicorn instantiates the protocol, so its limits are class attributes: the defaults from
``api/platform/timeouts.py``, replaced once per process by :func:`configure`, which
``api.main.app_from_environment`` calls with the ``TRITONGATE_*`` settings before the server
accepts connections.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.platform.deadlines import Deadlines
from api.platform.timeouts import HEADER_TIMEOUT_S, MAX_HEADER_BYTES


def configure(*, max_header_bytes: int, header_timeout_s: float) -> None:
    """Set this process's limits (before the server accepts connections)."""
    if max_header_bytes < 1 or header_timeout_s <= 0:
        raise ValueError("max_header_bytes and header_timeout_s must be positive")
    GuardedHttpToolsProtocol.max_header_bytes = max_header_bytes
    GuardedHttpToolsProtocol.header_timeout_s = header_timeout_s


def _refusal(status: int, detail: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: ClassVar[int] = MAX_HEADER_BYTES
    header_timeout_s: ClassVar[float] = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between heads' first byte and headers complete, or between requests
        self._head_started = False  # on_message_begin came for the current head
        self._head_bytes = 0  # bytes fed to the parser for the current head
        self._ended = 0  # messages completed on this connection
        self._head_timed = False  # a head deadline is set (in _HEADS)
        self._refused = False  # answered 431/408: nothing more is parsed

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        ended = self._ended
        if self._in_head:
            allowance = self.max_header_bytes - self._head_bytes
            if len(data) > allowance:
                self._feed_past_allowance(data, allowance)
                return
            self._head_bytes += len(data)
        super().data_received(data)
        # A head left incomplete (or bytes that began none) starts the clock; a request read
        # whole, the usual case, costs no deadline at all.
        if (
            self._in_head
            and not self._head_timed
            and (self._head_started or self._ended == ended)
            and not self.transport.is_closing()
        ):
            self._arm_head_timer()

    def _feed_past_allowance(self, data: bytes, allowance: int) -> None:
        """Feed what the allowance takes; what follows only if that completed the head (or a
        whole request, and another head began: it gets its own allowance)."""
        ended = self._ended
        self._head_bytes += allowance
        super().data_received(data[:allowance])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self._in_head and self._ended == ended:
            self._refuse(431, f"request headers over the limit of {self.max_header_bytes} bytes")
            return
        self.data_received(data[allowance:])

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_started = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._ended += 1

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_head and not self._refused and not self.transport.is_closing():
            # Answered before its body arrived (a 413, a 404): what is left of the body is
            # read and dropped for as long as a head may take, then the connection is closed.
            self._arm_head_timer()

    # The head deadline

    def _arm_head_timer(self) -> None:
        self._head_timed = True
        _HEADS.set(self, self.loop.time() + self.header_timeout_s)

    def _cancel_head_timer(self) -> None:
        if self._head_timed:
            self._head_timed = False
            _HEADS.discard(self)

    def _head_timed_out(self) -> None:
        self._head_timed = False
        if self.transport.is_closing():
            return
        if not self._head_started and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # not a byte of a request: nobody to answer
            return
        detail = f"request headers not received within {self.header_timeout_s:g} s"
        self._refuse(408, detail)

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` and close; after the response in progress, if there is one."""
        self._cancel_head_timer()
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # uvicorn closes the connection after the response
            self.flow.pause_reading()
            return
        self.transport.write(_refusal(status, detail, self.server_state.default_headers))
        self.transport.close()


# Every connection's head deadline, on one timer (api/platform/deadlines.py).
_HEADS: Deadlines[GuardedHttpToolsProtocol] = Deadlines(GuardedHttpToolsProtocol._head_timed_out)
