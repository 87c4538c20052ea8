"""The API's errors and the one place where every failure becomes an HTTP status.

Body shape everywhere: ``{"detail": "<message>"}`` (FastAPI's own convention).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from api.inference.cache.base import CacheError, CacheUnavailableError
from serving.batching import QueueFullError
from serving.detection import (
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from serving.errors import (
    InferenceFailedError,
    InferenceTimeoutError,
    InferenceUnavailableError,
    InvalidInferenceInputError,
    ServingError,
)


class ApiError(Exception):
    """A client or service error raised by the API's own code."""

    status_code = 400
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def response_headers(self) -> dict[str, str]:
        """The headers of this error's response (a copy: the handler may add to it)."""
        return dict(self.headers)


class EmailAlreadyExistsError(ApiError):
    """Registration or an email change hit an address that is taken (the book's 400)."""

    def __init__(self, detail: str = "Email already exists") -> None:
        super().__init__(detail)


class NotAuthenticatedError(ApiError):
    """No credentials, or a token or key that is unknown, expired or revoked."""

    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class PermissionDeniedError(ApiError):
    """Authenticated, but not allowed (not the author, not an admin)."""

    status_code = 403


class CsrfError(PermissionDeniedError):
    """A cookie-authenticated write without a matching ``x-csrf-token`` header."""

    def __init__(self, detail: str = "CSRF token missing or invalid") -> None:
        super().__init__(detail)


class NotFoundError(ApiError):
    status_code = 404


class CrossSiteRequestError(PermissionDeniedError):
    """A browser request from another site (``Sec-Fetch-Site: cross-site``, or an ``Origin``
    that is neither this host nor in ``TRITONGATE_CORS_ORIGINS``) to log in or to write with the
    login cookie (api/accounts/csrf.py)."""


class RateLimitedError(ApiError):
    """429 with ``Retry-After``: a limit of api/accounts/login_limits.py."""

    status_code = 429

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    def response_headers(self) -> dict[str, str]:
        return {**self.headers, "Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class TooManyLoginAttemptsError(RateLimitedError):
    """Too many failed logins for an account or from an address (api/accounts/login_limits.py)."""


class TooManyRegistrationsError(RateLimitedError):
    """Too many registrations from one address (api/accounts/login_limits.py)."""


class PasswordHashingBusyError(ApiError):
    """The password hashing pool's queue is full (api/accounts/security.py): 503, retry later."""

    status_code = 503


class DatabaseUnavailableError(ApiError):
    """The database cannot be reached (down, restarting, connection lost): retry later."""

    status_code = 503


class PayloadTooLargeError(ApiError):
    status_code = 413


class UnsupportedMediaTypeError(ApiError):
    status_code = 415


class UnprocessableInputError(ApiError):
    status_code = 422


class RequestBodyTooLargeError(HTTPException):
    """A request body over its limit (api/platform/body_limit.py), raised while the app reads it.

    An ``HTTPException`` (not an :class:`ApiError`) because FastAPI turns anything else raised
    while it reads a body into a 400; FastAPI's handler answers ``{"detail": ...}`` with 413."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"of {declared} bytes " if declared is not None else ""
        super().__init__(413, f"request body {size}over the limit of {limit} bytes")


# Most specific first: the first matching class decides the status.
_SERVING_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (QueueFullError, 503),
    (InferenceUnavailableError, 503),
    (InferenceTimeoutError, 504),
    (InvalidInferenceInputError, 422),
    (InferenceFailedError, 502),
    (ServingError, 503),
    (ImageTooLargeError, 413),
    (UnsupportedImageError, 415),
    (CorruptImageError, 422),
    (ImageDecodeError, 422),
    (CacheUnavailableError, 503),  # only DELETE /cache reports it: lookups bypass the cache
    (CacheError, 503),
)


def status_for(error: Exception) -> int:
    if isinstance(error, ApiError):
        return error.status_code
    for kind, status in _SERVING_STATUS:
        if isinstance(error, kind):
            return status
    return 500


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Map :class:`ApiError` (auth, permissions, CSRF, not found, input), serving, image and
    cache errors to their HTTP responses."""

    async def handle(request: Request, error: Exception) -> JSONResponse:
        status = status_for(error)
        headers = error.response_headers() if isinstance(error, ApiError) else {}
        if status == 503:
            wait = error.retry_after if isinstance(error, QueueFullError) else retry_after_s
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    for kind in (ApiError, ServingError, ImageDecodeError, CacheError):
        app.add_exception_handler(kind, handle)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


async def _http_error(request: Request, error: Exception) -> Response:
    """FastAPI's own HTTP errors (its default handler), saying why a body could not be parsed
    when FastAPI only says "There was an error parsing the body" (400)."""
    assert isinstance(error, HTTPException)
    cause = error.__cause__
    if error.status_code == 400 and isinstance(cause, UnicodeDecodeError):
        detail = f"request body is not valid UTF-8: {cause.reason} at byte {cause.start}"
        error = HTTPException(400, detail, error.headers)
    elif error.status_code == 400 and isinstance(cause, RecursionError):
        error = HTTPException(400, "request body is nested too deeply", error.headers)
    return await http_exception_handler(request, error)


async def _validation_error(request: Request, error: Exception) -> Response:
    """FastAPI's 422 (the errors, each echoing its input), with inputs that JSON can carry."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": _json_safe(jsonable_encoder(error.errors()))}, status_code=422)


def _json_safe(value: Any) -> Any:
    """``value`` with what Python's JSON parser accepts but no JSON response can hold made
    printable: NaN and Infinity (→ ``"nan"``, ``"inf"``) and lone surrogates from escapes such as
    ``"\\ud800"`` (→ the escape as text); without this an echoed input turns a 422 into a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value
