"""The error responses the routes declare to OpenAPI, from one helper.

Every status a route really returns is documented with the body that ``api/errors.py`` (or
FastAPI) sends, ``{"detail": ...}``, and the headers that come with it::

    @router.post("", responses=error_responses(400, 401, (403, "Not an admin"), 422))

``tests/integration/test_schemathesis.py`` checks the declarations against the running app.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What went wrong.")


class ValidationIssue(BaseModel):
    """One of FastAPI's request validation errors (``input`` and ``ctx`` may follow)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class UnprocessableBody(BaseModel):
    """422: FastAPI's validation errors (a list), or the API's own message (a string)."""

    detail: str | list[ValidationIssue]


DESCRIPTIONS: dict[int, str] = {
    400: "A request body that cannot be parsed",
    401: "No valid credentials: a bearer token, an API key or the login cookie",
    403: "Not allowed, or a write with the login cookie from another site or without a valid "
    "`x-csrf-token`",
    404: "Not found",
    408: "Request body not received within TRITONGATE_BODY_TIMEOUT_S",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many attempts; see Retry-After",
    502: "Triton failed the inference",
    503: "Overloaded or Triton unavailable; see Retry-After",
    504: "No result within the request deadline",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer`.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}

# The statuses of the inference endpoints' service errors (api/errors.py maps them).
SERVICE_ERRORS = (502, 503, 504)


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status (with its default description, or
    ``(status, description)``) with the error body and the headers it always carries. A route
    that reads a body (it declares 400) also declares 408: every body has a deadline."""
    responses: dict[int | str, dict[str, Any]] = {}
    declared = {item[0] if isinstance(item, tuple) else item for item in statuses}
    if 400 in declared and 408 not in declared:
        statuses = (*statuses, 408)
    for item in statuses:
        status, description = item if isinstance(item, tuple) else (item, DESCRIPTIONS[item])
        response: dict[str, Any] = {
            "model": UnprocessableBody if status == 422 else ErrorBody,
            "description": description,
        }
        if status in HEADERS:
            response["headers"] = HEADERS[status]
        responses[status] = response
    return responses
