"""Log lines: one format for every logger, the request id on each line, no credentials."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from api.platform.logging_setup import configure_logging, redact
from api.platform.request_context import accept_or_generate, request_id


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


KEY = "tg_Zx9_Qw-8Er7Ty6Ui5Op4As3"  # the shape of api.accounts.security's keys
KEY_REST = KEY[3:]


@pytest.mark.parametrize(
    "query",
    [
        "%74oken=abc.DEF-123_x",  # Starlette decodes query names: this authenticates
        "TOKEN=abc.DEF-123_x",
        "ToKeN=abc.DEF-123_x",
        "t%6Fk%65n=abc.DEF-123_x",
        "%2574oken=abc.DEF-123_x",  # decoded twice
        "access%5Ftoken=abc.DEF-123_x",
        "api%5Fkey=abc.DEF-123_x",
        "API_KEY=abc.DEF-123_x",
        "api%2Dkey=abc.DEF-123_x",
        "api+key=abc.DEF-123_x",
        "x=1&amp;token=abc.DEF-123_x",
        "x=1&%74oken=abc.DEF-123_x&y=2",
        "token=abc.DEF-123_x%2Babc.DEF-123_x",
        f"token=tg%5F{KEY_REST}",
        f"api_key=tg%5F{KEY_REST}",
        f"x=tg%5F{KEY_REST}",  # not a credential name, but a key once decoded
        f"x=%74g%5f{KEY_REST}",
        f"x=tg_{KEY_REST[:8]}%2D{KEY_REST[9:]}",
    ],
)
def test_credentials_in_encoded_query_strings_are_redacted(query: str) -> None:
    """uvicorn logs a WebSocket's path with its raw query string: whatever spelling Starlette
    would decode to a credential (or to one of our keys) is redacted."""
    for line in (
        f'127.0.0.1:50000 - "WebSocket /ws/detect?{query}" [accepted]',
        f'127.0.0.1:50000 - "WebSocket /object-detection?{query}" 403',
        f"GET /ws/detect?{query} HTTP/1.1",
    ):
        cleaned = redact(line)
        for secret in ("abc.DEF-123_x", KEY_REST, KEY_REST[:8]):
            assert secret not in cleaned, cleaned
        assert "[redacted]" in cleaned
        assert cleaned.split("?")[0] == line.split("?")[0], "the path is kept"


def test_an_encoded_key_outside_a_query_string_is_redacted() -> None:
    cleaned = redact(f'"WebSocket /ws/%74g%5F{KEY_REST}/x" 404')
    assert KEY_REST not in cleaned and cleaned == '"WebSocket /ws/tg_[redacted]/x" 404'


def test_ordinary_query_strings_are_left_alone() -> None:
    line = "GET /posts?limit=10&offset=20&q=hello+world%21&tag=tokyo 200"
    assert redact(line) == line


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


FORGED = "2026-01-05T10:12:03.512Z INFO     tritongate.access [forged] GET /admin 200 1.00 ms"


def test_text_lines_escape_control_characters(restore_logging: None) -> None:
    """A decoded path with CR, LF, ESC, NEL or U+2028 stays on its own line: nobody can
    append a well-formed line of their own."""
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    path = f"/x\r\n{FORGED}\n\x1b[2J\x85\u2028\u2029\x00end"
    logging.getLogger("tritongate.access").info("%s %s %d", "GET", path, 404)
    output = stream.getvalue()
    (line,) = output.splitlines()  # str.splitlines breaks at every one of those characters
    assert output.count("\n") == 1
    assert line.endswith("GET /x\\r\\n" + FORGED + "\\n\\x1b[2J\\x85\\u2028\\u2029\\x00end 404")


def test_a_traceback_keeps_its_lines_but_not_the_exception_messages(
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    try:
        try:
            raise ValueError(f"bad path /a\n{FORGED} Bearer s3cr3t")
        except ValueError as error:
            raise RuntimeError("wrapped\r\nsecond line") from error
    except RuntimeError:
        logging.getLogger("api.platform.middleware").exception("unhandled error in GET %s", "/a\nb")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("ERROR    api.platform.middleware [-] unhandled error in GET /a\\nb")
    assert lines[1] == "Traceback (most recent call last):"
    assert any(line.startswith('  File "') for line in lines), "the traceback keeps its lines"
    assert not any(line.startswith(FORGED[:24]) for line in lines[1:]), lines
    assert f"ValueError: bad path /a\\n{FORGED} Bearer [redacted]" in lines
    assert "RuntimeError: wrapped\\r\\nsecond line" in lines
    assert "s3cr3t" not in stream.getvalue()


def test_json_lines_stay_one_object_whatever_the_text_holds(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    path = f"/x\r\n{FORGED}\x85\u2028\u2029\x1b"
    logging.getLogger("tritongate.access").info("GET %s 404", path, extra={"path": path})
    try:
        raise ValueError(f"bad\n{FORGED}")
    except ValueError:
        logging.getLogger("api.platform.middleware").exception("unhandled error in GET %s", path)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    access, error = (json.loads(line) for line in lines)
    assert access["path"] == path and access["message"] == f"GET {path} 404"
    assert error["exception"].endswith(f"ValueError: bad\n{FORGED}")
