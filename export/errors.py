"""Typed failures of the export step."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An export could not produce a valid model."""


class DataUnavailableError(ExportError):
    """Training data or model weights are neither configured locally nor downloadable."""


class ParityError(ExportError):
    """The exported model disagrees with the original beyond the allowed tolerance."""
