"""The fastest HTTP server we can aim the load generator at: a raw asyncio protocol, no framework.

It answers every HTTP/1.1 request (any method and path; a ``Content-Length`` body is skipped)
with the same small JSON body on a keep-alive connection. Against it the generator's throughput
is the generator's own ceiling, not a framework's. ``python -m benchmarks.baselines.raw_noop
--port N`` (uvloop when installed).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Final, cast

BODY: Final = b'{"category":"noop"}'
RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
MAX_HEAD: Final = 64 * 1024


class NoopProtocol(asyncio.Protocol):
    """Parses just enough of each request to find where it ends, then answers ``RESPONSE``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        replies = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return self._reply(replies)
            length = _content_length(bytes(self.buffer[:end]))
            total = end + 4 + length
            if len(self.buffer) < total:
                return self._reply(replies)
            del self.buffer[:total]
            replies += 1

    def _reply(self, count: int) -> None:
        if count and self.transport is not None:
            self.transport.write(RESPONSE * count)


def _content_length(head: bytes) -> int:
    marker = head.lower().find(b"\r\ncontent-length:")
    if marker < 0:
        return 0
    start = marker + len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    return int(head[start : stop if stop >= 0 else None])


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(NoopProtocol, host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
