"""Provenance facts shared by the exports: file checksums, package versions, timestamps."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(packages: Sequence[str]) -> dict[str, str | None]:
    """The Python version and each installed distribution's version (None if not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def utc_timestamp() -> str:
    """Now in UTC, ISO 8601 to the second (``2025-01-31T12:00:00+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
