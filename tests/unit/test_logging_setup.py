"""Log lines: one format for every logger, the request id on each line, no credentials."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from api.logging_setup import configure_logging, redact
from api.request_context import accept_or_generate, request_id


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")
    saved = {name: logging.getLogger(name) for name in names}
    state = {name: (list(lg.handlers), lg.propagate, lg.level) for name, lg in saved.items()}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lg in saved.items():
        lg.handlers[:], lg.propagate, lg.level = state[name][0], state[name][1], state[name][2]


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer abc.DEF-123_x", "abc.DEF-123_x"),
        ('"WebSocket /object-detection?token=s3cr3t&x=1" [accepted]', "s3cr3t"),
        ("GET /ws/detect?api_key=tg_k3y", "tg_k3y"),
        ("headers: {'x-api-key': 'plainsecret'}", "plainsecret"),
        ("a key tg_0123456789abcdefABCDEF in a message", "tg_0123456789abcdefABCDEF"),
    ],
)
def test_credentials_are_redacted(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_request_ids_from_clients_are_accepted_only_when_sane() -> None:
    assert accept_or_generate(b"abc-123.X:y_z") == "abc-123.X:y_z"
    for bad in (b"", b"has space", b"new\nline", b"x" * 129, None):
        generated = accept_or_generate(bad)
        assert len(generated) == 32 and generated.isalnum()


def test_json_lines_carry_the_request_id_and_extras(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    token = request_id.set("req-42")
    try:
        logging.getLogger("api.something").info("hello %s", "world", extra={"status": 200})
        logging.getLogger("uvicorn.error").info("uvicorn speaks with Bearer abcdef")
    finally:
        request_id.reset(token)
    logging.getLogger("api.something").debug("outside any request")
    logging.getLogger("uvicorn.access").info("127.0.0.1 GET /x?token=zzz 200")  # silenced
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "hello world",
        "uvicorn speaks with Bearer [redacted]",
        "outside any request",
    ]
    assert lines[0]["request_id"] == lines[1]["request_id"] == "req-42"
    assert "request_id" not in lines[2]
    assert lines[0]["status"] == 200 and lines[0]["level"] == "INFO"
    assert lines[1]["logger"] == "uvicorn.error" and lines[0]["time"].endswith("Z")


def test_text_lines_and_level(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "text", stream)
    logging.getLogger("api.x").info("not shown")
    token = request_id.set("req-7")
    try:
        logging.getLogger("gunicorn.error").warning("shown")
    finally:
        request_id.reset(token)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING  gunicorn.error [req-7] shown")


def test_json_stays_valid_when_a_quoted_token_is_redacted(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.info('%s - "WebSocket %s" [accepted]', "1.2.3.4", "/ws?token=s3")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == '1.2.3.4 - "WebSocket /ws?token=[redacted]" [accepted]'
