"""export.provenance: file checksums, package versions and timestamps of the export records."""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from export.provenance import file_sha256, package_versions, utc_timestamp


def test_file_sha256_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 8193  # a little over 2 MiB: several 1 MiB chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    assert file_sha256(path) == hashlib.sha256(payload).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_package_versions_include_python_and_mark_missing_packages() -> None:
    versions = package_versions(["numpy", "tritongate-no-such-package"])
    assert versions == {
        "python": platform.python_version(),
        "numpy": metadata.version("numpy"),
        "tritongate-no-such-package": None,
    }


def test_utc_timestamp_is_timezone_aware_to_the_second() -> None:
    stamp = datetime.fromisoformat(utc_timestamp())
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert stamp.microsecond == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
