"""One log format for the whole process: ours, uvicorn's and gunicorn's (stdlib ``logging``).

``configure_logging(level, format)`` is called by each process's entry point (the worker
factory ``app_from_environment`` and ``tritongate serve``; gunicorn's master gets the same
configuration as its ``logconfig_dict``, see ``api/gunicorn_conf.py``), never at import time and
never by ``create_app``, so tests and embedding programs keep their own logging.

* ``TRITONGATE_LOG_FORMAT=text`` (default): ``time level logger [request id] message``;
  ``json``: one JSON object per line (``time``, ``level``, ``logger``, ``message``, ``pid``,
  ``request_id`` when serving a request, ``exception`` with the traceback, and any ``extra``).
* Every line carries the id of the request it was written for (see ``api/request_context.py``).
* Credentials never reach the output: bearer tokens, ``token``/``api_key`` query parameters,
  ``X-API-Key`` values and anything shaped like one of our API keys are replaced with
  ``[redacted]`` in the final line (uvicorn, for one, logs WebSocket paths with their query
  string).
* uvicorn's and gunicorn's access loggers are silenced: they print query strings, and the
  optional access line of ``api/middleware.py`` replaces them.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from api.request_context import current_request_id

LogFormat = Literal["text", "json"]

# Loggers that servers configure with handlers of their own: routed through the root instead.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn", "gunicorn.error")
# Access loggers whose lines include query strings (tokens): never printed.
SILENCED_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")
# Chatty at INFO about nothing useful (alembic lists its plugins): WARNING unless DEBUG.
QUIET_LOGGERS = ("alembic.runtime.plugins",)
REDACTED = "[redacted]"

_SECRETS = re.compile(
    r"(?P<keep>(?i:bearer)\s+|[?&](?i:token|api_key|access_token)=|(?i:x-api-key)['\"]?\s*[:=]\s*['\"]?)"
    r"[^\s&'\",;]+"
    r"|(?P<key>\btg_[A-Za-z0-9_\-]{16,})"
)
# The attributes every LogRecord has; anything else was passed as ``extra`` (uvicorn's
# ``color_message`` is its message with terminal colours: left out).
_OMITTED_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message", "request_id"}
)


def redact(text: str) -> str:
    """``text`` with every credential-shaped value replaced by ``[redacted]``."""

    def replace(match: re.Match[str]) -> str:
        if match.group("key"):
            return "tg_" + REDACTED
        return match.group("keep") + REDACTED

    return _SECRETS.sub(replace, text)


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
        line = (
            f"{_timestamp(record)} {record.levelname:<8} {record.name} [{request}] "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return redact(line)


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
        return json.dumps(payload, default=lambda value: redact(str(value)), ensure_ascii=False)


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
