"""Marks every test by its folder.

tests/unit → unit, tests/integration → integration, tests/e2e → e2e.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stack import (  # noqa: F401  (fixtures shared by every test folder)
    exported_repository,
    newsgroups_archive,
    photos,
    triton,
)

TESTS_DIR = Path(__file__).parent
FOLDER_MARKERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(str(item.path)).relative_to(TESTS_DIR)
        folder = relative.parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))
