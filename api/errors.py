"""The API's errors and the one place where every failure becomes an HTTP status.

Body shape everywhere: ``{"detail": "<message>"}`` (FastAPI's own convention).
"""

from __future__ import annotations

import math
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.cache.base import CacheError, CacheUnavailableError
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


class DatabaseUnavailableError(ApiError):
    """The database cannot be reached (down, restarting, connection lost): retry later."""

    status_code = 503


class PayloadTooLargeError(ApiError):
    status_code = 413


class UnsupportedMediaTypeError(ApiError):
    status_code = 415


class UnprocessableInputError(ApiError):
    status_code = 422


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
        headers = dict(error.headers) if isinstance(error, ApiError) else {}
        if status == 503:
            wait = error.retry_after if isinstance(error, QueueFullError) else retry_after_s
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    for kind in (ApiError, ServingError, ImageDecodeError, CacheError):
        app.add_exception_handler(kind, handle)
