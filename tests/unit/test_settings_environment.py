"""Settings handed to child processes (API workers) as environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import Settings


def test_round_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    original = Settings(
        _env_file=None,  # type: ignore[call-arg]
        model_repository=tmp_path / "repo",
        port=9123,
        batching_enabled=False,
        batch_max_delay_us=750,
        batching_per_model={"yolos": {"max_in_flight": 3, "idle_delay_us": 1500}},
        triton_url="10.0.0.5:8001",
    )
    variables = original.to_environment()
    assert variables["TRITONGATE_MODEL_REPOSITORY"] == str((tmp_path / "repo").resolve())
    assert variables["TRITONGATE_BATCHING_ENABLED"] == "false"
    assert '"idle_delay_us": 1500' in variables["TRITONGATE_BATCHING_PER_MODEL"]
    assert "TRITONGATE_TRITON_GRPC_PORT" not in variables, "unset values stay unset"
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    child = Settings(_env_file=None)  # type: ignore[call-arg]
    assert child.model_dump() == {
        **original.model_dump(),
        "model_repository": (tmp_path / "repo").resolve(),
        "work_dir": original.work_dir.resolve(),
    }
