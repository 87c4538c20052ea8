"""A real tritonserver serving both exported models through our Python-based ORT backend."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.client import InProcessOrtClient, TritonGrpcClient
from serving.detection import decode_image, preprocess
from serving.errors import InvalidInferenceInputError
from serving.launcher import LocalTriton, TritonLaunchError
from serving.model_config import config_path, load_model_config
from serving.specs import NEWSGROUPS_CATEGORIES

CONCURRENT = 64
TEXTS = [
    "computer cpu memory ram for my mac",
    "the encryption key escrow and the clipper chip",
    "god loves the church and jesus",
    "what is the meaning of religion and faith",
]


def _text_input(text: str | bytes) -> dict[str, np.ndarray]:
    raw = text.encode() if isinstance(text, str) else text
    return {"text": np.array([[raw]], dtype=object)}


def _pixels(photo: Path) -> dict[str, np.ndarray]:
    return preprocess(decode_image(photo.read_bytes()))


def _stub_processes(marker: str) -> list[int]:
    """PIDs of live processes whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def test_both_models_are_ready_with_the_cpu_config(triton: LocalTriton) -> None:
    async def check() -> None:
        client = TritonGrpcClient(triton.grpc_url)
        try:
            assert await client.server_ready()
            for model in ("newsgroups", "yolos"):
                info = await client.model_info(model)
                committed = load_model_config(config_path(triton.repository / model, "cpu"))
                assert info.ready
                assert info.versions == ("1",)
                assert info.max_batch_size == committed.max_batch_size
                assert info.config["instance_group"][0]["kind"] == "KIND_CPU"
        finally:
            await client.close()

    asyncio.run(check())


def test_single_requests_match_in_process_onnxruntime(
    triton: LocalTriton, exported_repository: Path, photos: list[Path]
) -> None:
    local = InProcessOrtClient(exported_repository, ["newsgroups", "yolos"])

    async def check() -> None:
        client = TritonGrpcClient(triton.grpc_url)
        try:
            for text in TEXTS:
                remote = await client.infer("newsgroups", _text_input(text))
                expected = await local.infer("newsgroups", _text_input(text))
                assert remote.model_version == "1"
                assert remote.outputs["label"].shape == (1, 1)
                np.testing.assert_array_equal(remote.outputs["label"], expected.outputs["label"])
                np.testing.assert_allclose(
                    remote.outputs["probabilities"], expected.outputs["probabilities"], atol=1e-6
                )
                assert 0 <= int(remote.outputs["label"][0, 0]) < len(NEWSGROUPS_CATEGORIES)
            for photo in photos[:2]:
                remote = await client.infer("yolos", _pixels(photo))
                expected = await local.infer("yolos", _pixels(photo))
                for name in ("logits", "pred_boxes"):
                    assert remote.outputs[name].shape == expected.outputs[name].shape
                    np.testing.assert_allclose(
                        remote.outputs[name], expected.outputs[name], atol=1e-5
                    )
        finally:
            await client.close()

    asyncio.run(check())


def _concurrent_inputs(model: str, photos: list[Path]) -> list[dict[str, np.ndarray]]:
    if model == "newsgroups":
        return [_text_input(f"{TEXTS[i % len(TEXTS)]} number {i}") for i in range(CONCURRENT)]
    frames = [_pixels(photo) for photo in photos]
    return [frames[i % len(frames)] for i in range(CONCURRENT)]


@pytest.mark.parametrize("model", ["newsgroups", "yolos"])
def test_concurrent_requests_are_batched_and_answered_correctly(
    model: str, triton: LocalTriton, exported_repository: Path, photos: list[Path]
) -> None:
    local = InProcessOrtClient(exported_repository, [model])
    requests = _concurrent_inputs(model, photos)

    async def check() -> tuple[dict[str, int], dict[str, int]]:
        client = TritonGrpcClient(triton.grpc_url)
        try:
            before = await client.inference_statistics(model)
            results = await asyncio.gather(*(client.infer(model, inputs) for inputs in requests))
            after = await client.inference_statistics(model)
            for inputs, result in zip(requests, results, strict=True):
                expected = await local.infer(model, inputs)
                for name, value in expected.outputs.items():
                    np.testing.assert_allclose(result.outputs[name], value, atol=1e-5)
            return before, after
        finally:
            await client.close()

    before, after = asyncio.run(check())
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    print(
        f"\n{model}: {CONCURRENT} concurrent requests → "
        f"{inferences} inferences in {executions} executions"
    )
    assert inferences == CONCURRENT
    assert executions < inferences, "Triton's dynamic batcher should have merged requests"


def test_a_bad_request_fails_alone_while_its_batch_mates_succeed(triton: LocalTriton) -> None:
    async def check() -> list[object]:
        client = TritonGrpcClient(triton.grpc_url)
        try:
            calls = [client.infer("newsgroups", _text_input(text)) for text in TEXTS * 4]
            calls.insert(5, client.infer("newsgroups", _text_input(b"\xff\xfe not utf-8")))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.close()

    results = asyncio.run(check())
    bad = results.pop(5)
    assert isinstance(bad, InvalidInferenceInputError)
    assert "not valid UTF-8" in str(bad)
    assert all(not isinstance(result, BaseException) for result in results)


def test_stop_leaves_no_server_or_stub_processes(exported_repository: Path, tmp_path: Path) -> None:
    server = LocalTriton(exported_repository, tmp_path / "own-triton")
    server.start()
    marker = str(tmp_path / "own-triton")
    running = _stub_processes(marker)
    assert len(running) >= 3, "tritonserver plus one backend stub per model instance"
    server.stop()
    assert _stub_processes(marker) == []


def test_a_model_that_cannot_load_fails_start_with_the_server_log(
    exported_repository: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "repository"
    shutil.copytree(exported_repository / "newsgroups", broken / "newsgroups")
    (broken / "newsgroups" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    server = LocalTriton(broken, tmp_path / "work", startup_timeout=60)
    with pytest.raises(TritonLaunchError) as raised:
        server.start()
    message = str(raised.value)
    assert "exited with code" in message
    assert "newsgroups" in message
    assert _stub_processes(str(tmp_path / "work")) == []
