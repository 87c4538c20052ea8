"""One log format for the whole process: ours, uvicorn's and gunicorn's (stdlib ``logging``).

``configure_logging(level, format)`` is called by each process's entry point (the worker
factory ``app_from_environment`` and ``tritongate serve``; gunicorn's master gets the same
configuration as its ``logconfig_dict``, see ``api/platform/gunicorn_conf.py``), never at import
time and never by ``create_app``, so tests and embedding programs keep their own logging.

* ``TRITONGATE_LOG_FORMAT=text`` (default): ``time level logger [request id] message``;
  ``json``: one JSON object per line (``time``, ``level``, ``logger``, ``message``, ``pid``,
  ``request_id`` when serving a request, ``exception`` with the traceback, and any ``extra``).
* Every line carries the id of the request it was written for (see
  ``api/platform/request_context.py``).
* Credentials never reach the output: bearer tokens, ``X-API-Key`` values, anything shaped like
  one of our API keys, and the value of every query parameter whose name, once percent- and
  ``+``-decoded and lower-cased, contains ``token``, ``api_key``/``apikey``, ``password`` or
  ``secret`` (``?%74oken=``, ``?TOKEN=``, ``?api%5Fkey=``: Starlette decodes query names, so the
  raw spelling does not matter) are replaced with ``[redacted]``; so is any value or
  percent-encoded run that decodes to an API key (``tg%5F…``). uvicorn, for one, logs WebSocket
  paths with their raw query string.
* No line can be forged: in text lines, the control characters (C0 such as newline and carriage
  return, DEL, C1, U+2028/U+2029) of the message, and of exception messages inside a traceback,
  are written as backslash escapes; the traceback keeps its own line breaks. JSON lines escape
  them by encoding (C1 and U+2028/U+2029 too, so even ``str.splitlines`` readers see one object
  per line).
* uvicorn's and gunicorn's access loggers are silenced: they print query strings, and the
  optional access line of ``api/platform/middleware.py`` replaces them.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO
from urllib.parse import unquote_plus

from api.platform.request_context import current_request_id

LogFormat = Literal["text", "json"]

# Loggers that servers configure with handlers of their own: routed through the root instead.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn", "gunicorn.error")
# Access loggers whose lines include query strings (tokens): never printed.
SILENCED_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")
# Chatty at INFO about nothing useful (alembic lists its plugins): WARNING unless DEBUG.
QUIET_LOGGERS = ("alembic.runtime.plugins",)
REDACTED = "[redacted]"

_SECRETS = re.compile(
    r"(?P<keep>(?i:bearer)\s+|(?i:x-api-key)['\"]?\s*[:=]\s*['\"]?)"
    r"[^\s&'\",;]+"
    r"|(?P<key>\btg(?:_|%5[Ff])(?:[A-Za-z0-9_\-]|%[0-9A-Fa-f]{2}){16,})"
)
# One of our API keys once decoded (``api/accounts/security.py``: ``tg_`` + URL-safe characters).
_API_KEY = re.compile(r"tg_[A-Za-z0-9_\-]{16,}")
# A query parameter as written in a URL: the separator, the raw name and the raw value.
_QUERY_PAIR = re.compile(r"(?P<head>[?&;](?P<name>[^\s&=#\"']*)=)(?P<value>[^\s&#\"']*)")
# Query parameter names (decoded, lower-cased) whose values are credentials.
_SECRET_NAME = re.compile(r"token|api[_\-. ]?key|password|secret")
# A run of URL characters with at least one percent escape (may decode to an API key).
_ENCODED_RUN = re.compile(r"[A-Za-z0-9_\-.~+%]*%[0-9A-Fa-f]{2}[A-Za-z0-9_\-.~+%]*")
# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: all of them end a
# line for some reader (``str.splitlines`` splits at \x1c-\x1e, \x85, U+2028 and U+2029).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NOT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# What ``json.dumps(ensure_ascii=False)`` leaves raw though some readers break lines at it.
_JSON_RAW_BREAKS = re.compile(r"[\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The attributes every LogRecord has; anything else was passed as ``extra`` (uvicorn's
# ``color_message`` is its message with terminal colours: left out).
_OMITTED_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message", "request_id"}
)


def _decoded(text: str, rounds: int = 3) -> str:
    """``text`` percent- and ``+``-decoded until it no longer changes (at most ``rounds``)."""
    for _ in range(rounds):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


def _redact_query_pair(match: re.Match[str]) -> str:
    secret_name = _SECRET_NAME.search(_decoded(match.group("name")).lower())
    if secret_name or _API_KEY.search(_decoded(match.group("value"))):
        return match.group("head") + REDACTED
    return match.group(0)


def _redact_encoded_key(match: re.Match[str]) -> str:
    return "tg_" + REDACTED if _API_KEY.search(_decoded(match.group(0))) else match.group(0)


def _redact_secret(match: re.Match[str]) -> str:
    if match.group("key"):
        return "tg_" + REDACTED
    return match.group("keep") + REDACTED


def redact(text: str) -> str:
    """``text`` with every credential-shaped value replaced by ``[redacted]``."""
    text = _QUERY_PAIR.sub(_redact_query_pair, text)
    text = _SECRETS.sub(_redact_secret, text)
    if "%" in text:
        text = _ENCODED_RUN.sub(_redact_encoded_key, text)
    return text


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``):
    one physical line, whatever the text held."""
    return _CONTROL.sub(_escape, text)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def format_exception_safely(exc_info: ExcInfo) -> str:
    """The traceback with its own line breaks, but each exception's message (and notes)
    redacted and escaped, so a message cannot start a line of its own."""
    exception = traceback.TracebackException(*exc_info)
    pending, seen = [exception], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        text = getattr(current, "_str", None)
        if isinstance(text, str):
            current._str = escape_controls(redact(text))  # type: ignore[attr-defined]
        notes = getattr(current, "__notes__", None)
        if notes:
            current.__notes__ = [escape_controls(redact(str(note))) for note in notes]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += list(getattr(current, "exceptions", None) or ())
    formatted = redact("".join(exception.format()).rstrip("\n"))
    return _CONTROL_NOT_NEWLINE.sub(_escape, formatted)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``None`` outside a request) for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request_id", None) or "-"
        message = escape_controls(redact(record.getMessage()))
        line = f"{_timestamp(record)} {record.levelname:<8} {record.name} [{request}] {message}"
        if record.exc_info and record.exc_info[0] is not None:
            line = f"{line}\n{format_exception_safely(record.exc_info)}"  # type: ignore[arg-type]
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; text values are redacted before encoding (redacting the
    encoded line could swallow an escape and break the JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,
        }
        request = getattr(record, "request_id", None)
        if request:
            payload["request_id"] = request
        for name, value in vars(record).items():
            if name not in _OMITTED_ATTRIBUTES:
                payload[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        line = json.dumps(payload, default=lambda value: redact(str(value)), ensure_ascii=False)
        # Only inside strings can these appear: escaping them keeps the JSON valid.
        return _JSON_RAW_BREAKS.sub(lambda match: f"\\u{ord(match.group(0)):04x}", line)


def logging_dict(
    level: str, log_format: LogFormat, stream: TextIO | str = "ext://sys.stderr"
) -> dict[str, Any]:
    """The whole configuration as a ``logging.config.dictConfig`` dictionary: one handler on
    the root; servers' loggers propagate to it; their access loggers print nothing."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    routed = {"handlers": [], "propagate": True, "level": level}
    silenced = {"handlers": [], "propagate": False, "level": logging.CRITICAL + 1}
    quiet = {"level": level if level == "DEBUG" else "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"tritongate": {"()": formatter}},
        "handlers": {
            "tritongate": {
                "class": "logging.StreamHandler",
                "formatter": "tritongate",
                "filters": ["request_id"],
                "stream": stream,
            }
        },
        "root": {"level": level, "handlers": ["tritongate"]},
        "loggers": {
            **{name: dict(routed) for name in SERVER_LOGGERS},
            **{name: dict(silenced) for name in SILENCED_ACCESS_LOGGERS},
            **{name: dict(quiet) for name in QUIET_LOGGERS},
        },
    }


def configure_logging(
    level: str, log_format: LogFormat, stream: TextIO | str = "ext://sys.stderr"
) -> None:
    """Route every logger of the process to one handler with the chosen format and level."""
    logging.config.dictConfig(logging_dict(level, log_format, stream))
