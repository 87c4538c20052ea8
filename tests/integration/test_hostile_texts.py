"""Hostile texts and request bodies through the real app and a real tritonserver.

What the API does (README "Hostile input"):

* empty or blank text, an empty batch, a blank batch member → 422 naming the field;
* control characters and NUL inside valid JSON strings are text: classified like the same text
  with spaces in their place (the tokenizer splits on them);
* raw control characters inside JSON strings (invalid JSON) → 422 "JSON decode error";
* bytes that are not UTF-8 → 400 "request body is not valid UTF-8: ... at byte n";
* lone surrogates (``"\\ud800"``) → 422; NaN/Infinity literals where a string belongs → 422 (both
  were 500s: the 422 echoed them back in a body JSON cannot encode);
* JSON nested deeper than the parser's recursion limit → 400 "nested too deeply";
* a body over ``TRITONGATE_MAX_BODY_BYTES`` (8 MiB) → 413 before it is read when it declares
  its length (the answer comes before the body is sent), and as soon as the limit is passed
  when it is chunked; uploads have their own limit (``MAX_UPLOAD_BYTES`` + 16 KiB);
* an inference body is read whole before it takes an admission slot, so one sent in pieces is
  served like any other; one not complete within ``TRITONGATE_BODY_TIMEOUT_S`` gets 408, and
  request heads have a size cap and a deadline (tests/integration/test_slow_clients.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.launcher import LocalTriton
from tests.helpers.memory import MIB, peak_rss_growth
from tests.integration.api_client import app_settings, running_app
from tests.integration.live_server import LiveServer

BODY_LIMIT = 8 * 1024 * 1024  # Settings.max_body_bytes' default
JSON = {"content-type": "application/json"}


Request = tuple[str, dict[str, Any]]


def _post_all(
    triton: LocalTriton, exported_repository: Path, requests: list[Request]
) -> list[httpx.Response]:
    """Each (path, httpx arguments) POSTed through one in-process app."""

    async def run() -> list[httpx.Response]:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            return [await client.post(path, **arguments) for path, arguments in requests]

    return asyncio.run(run())


def _raw(path: str, body: bytes) -> Request:
    return path, {"content": body, "headers": JSON}


def test_empty_and_blank_texts_are_422_naming_the_field(
    triton: LocalTriton, exported_repository: Path
) -> None:
    replies = _post_all(
        triton,
        exported_repository,
        [
            ("/prediction", {"json": {"text": ""}}),
            ("/prediction", {"json": {"text": " \n\t "}}),
            ("/prediction/batch", {"json": {"texts": []}}),
            ("/prediction/batch", {"json": {"texts": ["computer memory", "  "]}}),
        ],
    )
    assert [reply.status_code for reply in replies] == [422] * 4
    issues = [reply.json()["detail"][0] for reply in replies]
    assert issues[0]["loc"] == ["body", "text"] and issues[0]["type"] == "string_too_short"
    assert "text must not be empty or only whitespace" in issues[1]["msg"]
    assert issues[2]["loc"] == ["body", "texts"] and issues[2]["type"] == "too_short"
    assert "texts[1] must not be empty or only whitespace" in issues[3]["msg"]


def test_control_characters_and_nul_are_classified_as_text(
    triton: LocalTriton, exported_repository: Path
) -> None:
    hostile = "computer\x00cpu\x07memory\x1b[31mram\r\nfor\x7fmy\x0cmac"
    spaced = "computer cpu memory [31mram  for my mac"
    replies = _post_all(
        triton,
        exported_repository,
        [
            ("/prediction", {"json": {"text": hostile}}),
            ("/prediction", {"json": {"text": spaced}}),
            ("/prediction", {"json": {"text": "\x00\x01\x02"}}),
            ("/prediction/batch", {"json": {"texts": [hostile, "\x00"]}}),
        ],
    )
    assert [reply.status_code for reply in replies] == [200] * 4, [r.text for r in replies]
    hostile_body, spaced_body, only_controls, batch = (reply.json() for reply in replies)
    assert hostile_body["category"] == spaced_body["category"]
    assert hostile_body["probabilities"] == pytest.approx(spaced_body["probabilities"], abs=1e-6)
    assert sum(only_controls["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert batch["predictions"][0]["probabilities"] == pytest.approx(
        hostile_body["probabilities"], abs=1e-6
    )


def test_malformed_json_bodies_get_a_clear_4xx(
    triton: LocalTriton, exported_repository: Path
) -> None:
    replies = _post_all(
        triton,
        exported_repository,
        [
            _raw("/prediction", b'{"text": "raw \x01 control"}'),
            _raw("/prediction", b'{"text": "caf\xe9 latin-1, not UTF-8"}'),
            _raw("/prediction", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
            _raw("/prediction", b'{"text": "half a body'),
        ],
    )
    raw_control, latin1, nested, cut = replies
    assert raw_control.status_code == 422
    assert raw_control.json()["detail"][0]["ctx"]["error"] == "Invalid control character at"
    assert latin1.status_code == 400
    assert latin1.json()["detail"] == (
        "request body is not valid UTF-8: invalid continuation byte at byte 13"
    )
    assert nested.status_code == 400
    assert nested.json()["detail"] == "request body is nested too deeply"
    assert cut.status_code == 422 and cut.json()["detail"][0]["type"] == "json_invalid"


def test_lone_surrogates_and_non_finite_numbers_are_422_not_500(
    triton: LocalTriton, exported_repository: Path
) -> None:
    bodies = [
        ("/prediction", b'{"text": "abc \\ud800 def"}'),
        ("/prediction/batch", b'{"texts": ["fine", "\\udfff"]}'),
        ("/prediction/batch", b'{"texts": "\\ud800"}'),
        ("/prediction", b'{"text": NaN}'),
        ("/prediction/batch", b'{"texts": [Infinity]}'),
    ]
    replies = _post_all(triton, exported_repository, [_raw(path, body) for path, body in bodies])
    for (_, body), reply in zip(bodies, replies, strict=True):
        assert reply.status_code == 422, (body, reply.text)
        assert isinstance(json.loads(reply.content)["detail"], list)
    assert "texts[1] is not valid Unicode: a lone surrogate U+DFFF" in replies[1].text
    assert replies[0].json()["detail"][0]["input"] == "abc \\ud800 def"  # echoed as text
    assert replies[3].json()["detail"][0]["input"] == "nan"


def test_a_text_over_the_character_limit_is_422_and_an_upload_over_its_limit_413(
    triton: LocalTriton, exported_repository: Path
) -> None:
    limit = 10 * 1024 * 1024
    replies = _post_all(
        triton,
        exported_repository,
        [
            ("/prediction", {"json": {"text": "a" * 100_001}}),
            ("/object-detection", {"files": {"image": ("x.jpg", b"\xff" * (limit + 1))}}),
            ("/object-detection", {"files": {"image": ("x.jpg", b"\xff" * (limit + 20_000))}}),
        ],
    )
    too_long, file_over, body_over = replies
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == "text has 100001 characters; the limit is 100000"
    assert file_over.status_code == 413
    assert file_over.json()["detail"] == f"image over {limit} bytes"
    assert body_over.status_code == 413
    assert body_over.json()["detail"].endswith(f"over the limit of {limit + 16 * 1024} bytes")


# --- the body limit, on a real server ---------------------------------------------------------


def _ten_mb_body() -> bytes:
    return b'{"text": "' + b"a" * 10_000_000 + b'"}'


def test_a_10_mb_body_is_413_without_being_read(server: LiveServer) -> None:
    body = _ten_mb_body()
    with httpx.Client(timeout=30) as client:
        client.post(f"{server.base_url}/prediction", json={"text": "warm up"})
        for path in ("/prediction", "/prediction/batch", "/posts"):
            started = time.perf_counter()
            with peak_rss_growth(server.process.pid) as growth:
                reply = client.post(f"{server.base_url}{path}", content=body, headers=JSON)
            elapsed = time.perf_counter() - started
            print(
                f"\n10 MB body to {path}: {reply.status_code} in {elapsed * 1000:.0f} ms, "
                f"server peak RSS +{growth.mib:.2f} MiB"
            )
            assert reply.status_code == 413
            assert reply.json()["detail"] == (
                f"request body of {len(body)} bytes over the limit of {BODY_LIMIT} bytes"
            )
            assert "x-request-id" in reply.headers
            assert growth.bytes < 4 * MIB
        assert client.post(f"{server.base_url}/prediction", json={"text": "cpu"}).is_success


def test_the_413_comes_before_the_body_is_sent(server: LiveServer) -> None:
    head = (
        b"POST /prediction HTTP/1.1\r\nHost: tritongate\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000\r\n\r\n" + b'{"text": "aaaa'
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(head)  # 10 MB announced, 14 bytes sent
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["detail"].endswith(
        f"over the limit of {BODY_LIMIT} bytes"
    )


def test_a_chunked_body_is_cut_off_at_the_limit(server: LiveServer) -> None:
    """Without a length, the body is read up to the limit and no further into memory (httpx
    sends all of it before reading the answer; uvicorn discards the rest)."""
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"text": "'
        for _ in range(1000):  # up to 100 MB, no Content-Length
            sent += 100_000
            yield b"a" * 100_000

    with (
        httpx.Client(timeout=30) as client,
        peak_rss_growth(server.process.pid) as growth,
    ):
        reply = client.post(f"{server.base_url}/prediction", content=chunks(), headers=JSON)
    print(
        f"\nchunked body: {reply.status_code} after {sent / MIB:.1f} MiB sent, "
        f"server peak RSS +{growth.mib:.2f} MiB"
    )
    assert reply.status_code == 413
    assert reply.json()["detail"] == f"request body over the limit of {BODY_LIMIT} bytes"
    assert growth.bytes < BODY_LIMIT + 8 * MIB, "at most the limit is buffered, not 100 MB"


def test_a_body_sent_in_pieces_is_read_whole_and_classified(server: LiveServer) -> None:
    """Admission reads the body (several messages from the server) before the slot, then hands
    the same messages to the app: the answer is the one a body sent at once gets."""
    body = json.dumps({"text": "my mac's memory and the cpu " * 200}).encode()
    head = (
        b"POST /prediction HTTP/1.1\r\nHost: tritongate\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(head)
        for start in range(0, len(body), 1000):
            time.sleep(0.02)  # each piece its own read on the server
            connection.sendall(body[start : start + 1000])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", answer
    at_once = httpx.post(f"{server.base_url}/prediction", content=body, headers=JSON, timeout=10)
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == at_once.json()
