"""benchmarks.http11: response framing and connection semantics, from raw bytes."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.http11 import (
    HttpProtocolError,
    HttpResponse,
    IncompleteResponse,
    ServerClosedConnection,
    parse_head,
    read_response,
)


def read(raw: bytes, *, eof: bool = True, head_request: bool = False) -> HttpResponse:
    async def go() -> HttpResponse:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        if eof:
            reader.feed_eof()
        return await read_response(reader, head_request=head_request)

    return asyncio.run(go())


def test_content_length_body_and_keep_alive() -> None:
    response = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloNEXT", eof=False)
    assert (response.status, response.body, response.keep_alive) == (200, b"hello", True)
    assert response.header("x-a") == "b" and response.header("missing") is None


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;name=value\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n"
    )
    assert read(raw, eof=False).body == b"Wikipedia in\r\n\r\nchunks."


def test_chunked_takes_precedence_over_content_length() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    assert read(raw, eof=False).body == b"ok"


def test_connection_semantics_by_version_and_header() -> None:
    assert not read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert not read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
    assert read(kept).keep_alive


def test_body_until_close_when_there_is_no_length() -> None:
    response = read(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert response.body == b"all of it" and not response.keep_alive


def test_no_body_statuses_head_requests_and_interim_responses() -> None:
    assert read(b"HTTP/1.1 204 No Content\r\n\r\n", eof=False).body == b""
    head = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", eof=False, head_request=True)
    assert head.body == b"" and head.keep_alive
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    assert read(interim).status == 201


def test_closed_before_and_during_a_response_are_different_errors() -> None:
    with pytest.raises(ServerClosedConnection):
        read(b"")
    with pytest.raises(IncompleteResponse):
        read(b"HTTP/1.1 200 OK\r\nContent-")
    with pytest.raises(IncompleteResponse):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    with pytest.raises(IncompleteResponse):
        read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")


@pytest.mark.parametrize(
    "head",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ],
)
def test_malformed_heads_are_protocol_errors(head: bytes) -> None:
    with pytest.raises(HttpProtocolError):
        parse_head(head)
