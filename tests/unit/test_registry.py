"""serving.registry: which model version the prediction cache may key on, against a fake client."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving.client import ModelInfo
from serving.errors import InferenceUnavailableError
from serving.registry import ModelRegistry

MODEL = "toy"


class FakeServer:
    """Answers ``model_info`` with ``version``, or raises while ``down``."""

    def __init__(self, version: str = "1") -> None:
        self.version = version
        self.down = False

    async def model_info(self, model: str) -> ModelInfo:
        if self.down:
            raise InferenceUnavailableError("Triton is unreachable: connection refused")
        return ModelInfo(model, (self.version,), True, 8, (), ())


def registry_for(server: FakeServer, tmp_path: Path) -> ModelRegistry:
    (tmp_path / MODEL).mkdir()
    (tmp_path / MODEL / "labels.txt").write_text("a\nb\n", encoding="utf-8")
    return ModelRegistry(server, tmp_path, [MODEL], None)  # type: ignore[arg-type]


def test_a_version_is_used_for_the_cache_only_once_a_refresh_confirmed_it(tmp_path: Path) -> None:
    server = FakeServer()
    registry = registry_for(server, tmp_path)
    assert registry.cache_version(MODEL) is None  # nothing read from the server yet
    asyncio.run(registry.refresh())
    assert registry.cache_version(MODEL) == "1"
    assert registry.all_confirmed


def test_an_unreachable_server_unconfirms_until_the_next_refresh(tmp_path: Path) -> None:
    server = FakeServer()
    registry = registry_for(server, tmp_path)
    asyncio.run(registry.refresh())
    registry.unreachable(MODEL)
    assert registry.cache_version(MODEL) is None
    assert not registry.all_confirmed
    server.down = True
    asyncio.run(registry.refresh())  # still down: stays unconfirmed
    assert registry.cache_version(MODEL) is None
    server.down, server.version = False, "2"  # back, with a new version
    asyncio.run(registry.refresh())
    assert registry.cache_version(MODEL) == "2"


def test_a_failed_refresh_alone_unconfirms(tmp_path: Path) -> None:
    server = FakeServer()
    registry = registry_for(server, tmp_path)
    asyncio.run(registry.refresh())
    server.down = True
    asyncio.run(registry.refresh())
    assert registry.cache_version(MODEL) is None
    assert "unreachable" in (registry.states[MODEL].error or "")


def test_a_result_from_another_version_unconfirms_and_the_same_version_does_not(
    tmp_path: Path,
) -> None:
    server = FakeServer()
    registry = registry_for(server, tmp_path)
    asyncio.run(registry.refresh())
    registry.served(MODEL, "1")
    assert registry.cache_version(MODEL) == "1"
    registry.served(MODEL, "2")  # Triton now serves version 2; the registry has not seen it
    assert registry.cache_version(MODEL) is None
    server.version = "2"
    asyncio.run(registry.refresh())
    assert registry.cache_version(MODEL) == "2"
