"""api.platform.runtime: start-up objects leave the collector's view; collections become rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from api.platform.runtime import YOUNG_GENERATION_THRESHOLD, tune_garbage_collector


@pytest.fixture()
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_freezes_live_objects_and_raises_the_threshold(restore_gc: None) -> None:
    before = gc.get_freeze_count()
    tune_garbage_collector()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
    assert gc.isenabled(), "cycles are still collected"
