"""benchmarks.scenarios and benchmarks.stack without servers: selection, plans, skips, checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.inputs import FALLBACK_TEXTS, ImageInputs, TextInputs
from benchmarks.records import ScenarioRecord
from benchmarks.scenarios import (
    SCENARIOS,
    select,
    single_client_check,
    throughput_check,
)
from benchmarks.session import Overrides, Session
from benchmarks.stack import ApiConfig, Stack, StackSettings, Unavailable, derive_repository
from serving.model_config import load_model_config
from tests.unit.benchmarks.synthetic import load_measurement, text_record

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def repository_with_configs(target: Path) -> Path:
    """The committed configs of both models, a fake version and labels."""
    for model in ("newsgroups", "yolos"):
        source = PROJECT_ROOT / "model_repository" / model
        (target / model / "configs").mkdir(parents=True)
        shutil.copy(source / "config.pbtxt", target / model / "config.pbtxt")
        shutil.copy(source / "configs" / "cpu.pbtxt", target / model / "configs" / "cpu.pbtxt")
        (target / model / "1").mkdir()
        (target / model / "1" / "model.onnx").write_bytes(b"onnx")
        (target / model / "labels.txt").write_text("a\nb\n")
    return target


def session_for(tmp_path: Path, url: str | None = None, triton_url: str | None = None) -> Session:
    repository = repository_with_configs(tmp_path / "repository")
    settings = StackSettings(
        repository=repository, work_dir=tmp_path / "work", url=url, triton_url=triton_url
    )
    stack = Stack(settings)
    return Session(
        stack=stack,
        repository=repository,
        config_name="cpu",
        default_api=ApiConfig(),
        overrides=Overrides(),
        load_texts=lambda: TextInputs(FALLBACK_TEXTS, {"kind": "built-in"}),
        load_images=lambda: ImageInputs((), {"kind": "none"}),
    )


# -- selection ------------------------------------------------------------------------------------


def test_selection_by_key_or_number_with_the_generator_first() -> None:
    every = ["generator", "text", "detection", "streams", "cache", "batching"]
    assert [s.key for s in select([])] == every
    assert [s.key for s in select(["all"])] == every
    assert [s.key for s in select(["2", "text"])] == ["generator", "detection", "text"]
    assert [s.key for s in select(["3", "cache"])] == ["generator", "streams", "cache"]
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        select(["nope"])


# -- plans ----------------------------------------------------------------------------------------


def test_local_plans_measure_every_series_at_every_concurrency(tmp_path: Path) -> None:
    session = session_for(tmp_path)
    record = SCENARIOS["text"].new_record()
    steps = SCENARIOS["text"].plan(session, record)
    assert record.skipped == []
    assert len(steps) == 1 + 5 * 4  # the limit, then 4 series at 5 concurrencies
    assert steps[0].label == "text · limit (in-process ONNX Runtime)"
    assert [s.label for s in steps[1:5]] == [
        "text · api · 1 clients",
        "text · triton_direct · 1 clients",
        "text · book · 1 clients",
        "text · noop · 1 clients",
    ]
    session.overrides = Overrides(duration=0.5, warmup=0.1, concurrency=(2, 8))
    detection = SCENARIOS["detection"].plan(session, SCENARIOS["detection"].new_record())
    assert len(detection) == 1 + 2 * 3
    assert detection[-1].seconds == pytest.approx(0.6)


def test_batching_plan_covers_on_off_open_loop_and_sweeps(tmp_path: Path) -> None:
    session = session_for(tmp_path)
    record = SCENARIOS["batching"].new_record()
    labels = [step.label for step in SCENARIOS["batching"].plan(session, record)]
    on = "batching on, max delay 2000 µs"
    assert labels[:6] == [
        f"batching · {on} · 16 clients",
        f"batching · {on} · 64 clients",
        f"batching · {on} · 256 clients",
        f"batching · {on} · open loop #1",
        f"batching · {on} · open loop #2",
        f"batching · {on} · open loop #3",
    ]
    assert labels[6] == "batching · front-end batching off · 16 clients"
    assert "batching · batching on, max delay 0 µs · 64 clients" in labels
    assert "batching · batching on, max delay 5000 µs · 64 clients" in labels
    assert "batching · batching on, max delay 2000 µs, batch ≤ 8 · 64 clients" in labels
    assert not any("batch ≤ 128" in label for label in labels)  # the repository's own size
    assert len(labels) == 12 + 3 + 2


def test_remote_plans_skip_what_cannot_be_measured_remotely(tmp_path: Path) -> None:
    session = session_for(tmp_path, url="http://deployment:8000")
    record = SCENARIOS["text"].new_record()
    steps = SCENARIOS["text"].plan(session, record)
    assert {step.label.split(" · ")[1] for step in steps} == {"api"}
    assert len(record.skipped) == 4
    assert any("--triton-url" in reason for reason in record.skipped)
    batching = SCENARIOS["batching"].new_record()
    assert SCENARIOS["batching"].plan(session, batching) == []
    assert "tritongate bench compare" in batching.skipped[0]

    with_triton = session_for(tmp_path / "b", url="http://d:8000", triton_url="gpu:8001")
    steps = SCENARIOS["text"].plan(with_triton, SCENARIOS["text"].new_record())
    assert {step.label.split(" · ")[1] for step in steps} == {"api", "triton_direct"}


def test_remote_stack_measures_the_deployment_and_refuses_local_servers(tmp_path: Path) -> None:
    stack = Stack(StackSettings(repository=tmp_path, work_dir=tmp_path, url="http://d:8000/"))
    assert stack.api_url(ApiConfig()) == "http://d:8000"
    for start in (
        lambda: stack.book_url(with_yolos=False),
        stack.noop_url,
        stack.triton_url,
    ):
        with pytest.raises(Unavailable):
            start()
    external = Stack(StackSettings(repository=tmp_path, work_dir=tmp_path, triton_url="gpu:1"))
    with pytest.raises(Unavailable, match="max_batch_size"):
        external.triton_url(max_batch_size=8)


# -- stack helpers --------------------------------------------------------------------------------


def test_derived_repository_changes_only_the_batch_size(tmp_path: Path) -> None:
    source = repository_with_configs(tmp_path / "source")
    derived = derive_repository(source, tmp_path / "derived", "newsgroups", 8, "cpu")
    for name in ("config.pbtxt", "configs/cpu.pbtxt"):
        config = load_model_config(derived / "newsgroups" / name)
        original = load_model_config(source / "newsgroups" / name)
        assert config.max_batch_size == 8
        assert list(config.dynamic_batching.preferred_batch_size) == [8]
        config.max_batch_size = original.max_batch_size
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.preferred_batch_size.extend(
            original.dynamic_batching.preferred_batch_size
        )
        assert config == original
    thirty_two = derive_repository(source, tmp_path / "b32", "newsgroups", 32, "cpu")
    config = load_model_config(thirty_two / "newsgroups" / "configs" / "cpu.pbtxt")
    assert list(config.dynamic_batching.preferred_batch_size) == [32]
    assert (derived / "yolos" / "configs" / "cpu.pbtxt").is_symlink()
    assert (derived / "newsgroups" / "1" / "model.onnx").resolve() == (
        source / "newsgroups" / "1" / "model.onnx"
    ).resolve()


def test_api_config_environment_and_labels() -> None:
    assert ApiConfig().env() == {
        "TRITONGATE_BATCHING_ENABLED": "true",
        "TRITONGATE_BATCH_MAX_DELAY_US": "2000",
        "TRITONGATE_CACHE_ENABLED": "false",
    }
    cached = ApiConfig(cache=True)
    assert cached.env()["TRITONGATE_CACHE_ENABLED"] == "true"
    assert cached.label == "batching on, max delay 2000 µs, prediction cache on"
    assert cached.to_dict()["cache"] is True and "cache" not in ApiConfig().to_dict()
    off = ApiConfig(batching=False)
    assert off.env()["TRITONGATE_BATCHING_ENABLED"] == "false"
    assert off.label == "front-end batching off"
    assert ApiConfig(max_delay_us=500, max_batch_size=8).label == (
        "batching on, max delay 500 µs, batch ≤ 8"
    )


def test_streams_plan_alternates_each_bars_reference_with_its_streams(tmp_path: Path) -> None:
    session = session_for(tmp_path)
    session.overrides.rounds = 3
    record = SCENARIOS["streams"].new_record()
    labels = [step.label for step in SCENARIOS["streams"].plan(session, record)]
    # Rounds of the reference and the streams, the reference first in odd rounds and last in
    # even ones; 2 streams come last, once.
    assert labels == [
        "streams · limit (in-process ONNX Runtime, batch 1, round 1)",
        "streams · 1 × 24 fps, round 1",
        "streams · 1 × 24 fps, round 2",
        "streams · limit (in-process ONNX Runtime, batch 1, round 2)",
        "streams · limit (in-process ONNX Runtime, batch 1, round 3)",
        "streams · 1 × 24 fps, round 3",
        "streams · limit (in-process ONNX Runtime, batch 2/4/8, round 1)",
        "streams · 4 × 24 fps, round 1",
        "streams · 4 × 24 fps, round 2",
        "streams · limit (in-process ONNX Runtime, batch 2/4/8, round 2)",
        "streams · limit (in-process ONNX Runtime, batch 2/4/8, round 3)",
        "streams · 4 × 24 fps, round 3",
        "streams · 2 × 24 fps",
    ]
    assert record.skipped == []
    session.overrides.rounds = None
    default = SCENARIOS["streams"].plan(session, SCENARIOS["streams"].new_record())
    assert sum(step.label.startswith("streams · 4 × 24 fps") for step in default) == 6


def test_cache_plan_measures_misses_then_hits_and_needs_a_local_api(tmp_path: Path) -> None:
    session = session_for(tmp_path / "local")
    record = SCENARIOS["cache"].new_record()
    labels = [step.label for step in SCENARIOS["cache"].plan(session, record)]
    assert labels == [
        "cache · miss · 1 clients",
        "cache · hit · 1 clients",
        "cache · miss · 16 clients",
        "cache · hit · 16 clients",
    ]
    remote = session_for(tmp_path / "remote", url="http://api.example:8000")
    record = SCENARIOS["cache"].new_record()
    assert SCENARIOS["cache"].plan(remote, record) == []
    assert "remote deployment" in record.skipped[0]


# -- the REST issue's bars -------------------------------------------------------------------------


def test_bars_pass_on_the_hand_measured_figures() -> None:
    record = text_record()  # API 4,000 req/s, p50 14 ms at 64; book 1,000; 1 client 1.6 vs 1.25
    throughput = throughput_check(record)
    assert throughput.status == "PASS"
    assert throughput.values["ratio"] == pytest.approx(4.0, rel=0.05)
    overhead = single_client_check(record)
    assert overhead.status == "PASS"
    assert overhead.values["added_ms"] == pytest.approx(0.35, abs=0.01)
    assert "+0.35 ms (bar ≤ 1.5 ms)" in overhead.detail


def test_bars_fail_with_the_numbers() -> None:
    slow = text_record(api_rps_64=1500.0, api_p50_1=3.0)
    throughput = throughput_check(slow)
    assert throughput.status == "FAIL" and "1.5" in throughput.detail
    overhead = single_client_check(slow)
    assert overhead.status == "FAIL" and "+1.75 ms" in overhead.detail

    record = text_record()
    book = record.one("book", concurrency=64)
    assert book is not None
    record.measurements.remove(book)
    fast_book_tail = load_measurement("text", "book", rps=1000.0, p50=5.0, clients=64)
    record.measurements.append(fast_book_tail)  # 4× the throughput but a higher p99
    assert throughput_check(record).status == "FAIL"


def test_bars_not_measured_without_their_figures() -> None:
    empty = ScenarioRecord("text", 1, "t", "d")
    assert throughput_check(empty).status == "NOT MEASURED"
    only_api = ScenarioRecord("text", 1, "t", "d")
    only_api.measurements.append(load_measurement("text", "api", rps=500.0, p50=1.0, clients=1))
    check = single_client_check(only_api)
    assert check.status == "NOT MEASURED" and "Triton direct" in check.detail
