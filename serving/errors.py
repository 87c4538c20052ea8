"""Typed failures of the serving layer; the API maps each class to one HTTP status in one place."""

from __future__ import annotations


class ServingError(RuntimeError):
    """Base class of every serving failure."""


class InferenceUnavailableError(ServingError):
    """The inference server cannot be reached or is not ready: retry later (HTTP 503)."""


class ModelNotReadyError(InferenceUnavailableError):
    """The server is up but this model is not loaded or not ready (HTTP 503)."""


class InferenceTimeoutError(ServingError):
    """The request's deadline passed before the result came back (HTTP 504)."""


class InvalidInferenceInputError(ServingError):
    """The server refused the request's inputs (HTTP 422)."""


class InferenceFailedError(ServingError):
    """The server failed while running a valid request (HTTP 502)."""
