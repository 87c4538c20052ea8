"""serving.ort_runtime: provider choice, request checks, one ORT call per batch, split results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from serving.ort_runtime import OrtModel, RequestError, choose_providers, provider_names
from serving.specs import TensorSpec

TRT = {
    "name": "tensorrt",
    "parameters": {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": "1073741824",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/engine_cache",
    },
}
ALL_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_gpu_instance_prefers_tensorrt_then_cuda_then_cpu() -> None:
    providers = choose_providers("KIND_GPU", 1, [TRT], ALL_PROVIDERS)
    assert provider_names(providers) == ALL_PROVIDERS
    trt_options = providers[0][1]
    assert trt_options == {
        "device_id": "1",
        "trt_fp16_enable": "True",
        "trt_max_workspace_size": "1073741824",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": "/engine_cache",
    }
    assert providers[1] == ("CUDAExecutionProvider", {"device_id": "1"})


def test_gpu_instance_without_tensorrt_accelerator_uses_cuda() -> None:
    assert provider_names(choose_providers("GPU", 0, [], ALL_PROVIDERS)) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_gpu_instance_on_a_cpu_only_onnxruntime_falls_back_to_cpu() -> None:
    assert choose_providers("KIND_GPU", 0, [TRT], ["CPUExecutionProvider"]) == [
        "CPUExecutionProvider"
    ]


def test_cpu_instance_never_uses_gpu_providers() -> None:
    assert choose_providers("CPU", 0, [TRT], ALL_PROVIDERS) == ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def doubling_model(tmp_path_factory: pytest.TempPathFactory) -> OrtModel:
    """y = 2x over [batch, 3] floats, plus s = rowsum(x) as a [batch] output (reshaped to [1])."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch"])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
        ],
        "doubling",
        [x],
        [y, s],
        initializer=[two, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = Path(tmp_path_factory.mktemp("ort")) / "model.onnx"
    onnx.save(model, str(path))
    return OrtModel(
        path,
        inputs=[TensorSpec("x", "TYPE_FP32", (3,))],
        outputs=[TensorSpec("y", "TYPE_FP32", (3,)), TensorSpec("s", "TYPE_FP32", (1,), ())],
        max_batch_size=8,
    )


def test_requests_share_one_call_and_get_their_own_rows(doubling_model: OrtModel) -> None:
    calls = []
    original = doubling_model.run

    def counting_run(feeds):  # type: ignore[no-untyped-def]
        calls.append({name: value.shape for name, value in feeds.items()})
        return original(feeds)

    doubling_model.run = counting_run  # type: ignore[method-assign]
    try:
        a = np.arange(3, dtype=np.float32).reshape(1, 3)
        b = np.arange(6, dtype=np.float32).reshape(2, 3) + 10
        first, second = doubling_model.run_requests([{"x": a}, {"x": b}])
    finally:
        del doubling_model.run
    assert calls == [{"x": (3, 3)}]
    assert isinstance(first, dict) and isinstance(second, dict)
    np.testing.assert_array_equal(first["y"], a * 2)
    np.testing.assert_array_equal(second["y"], b * 2)
    np.testing.assert_array_equal(second["s"], b.sum(axis=1, keepdims=True))
    assert second["s"].shape == (2, 1), "a [batch] graph output comes back in the config's dims"


def test_bad_request_fails_alone(doubling_model: OrtModel) -> None:
    good = np.ones((1, 3), dtype=np.float32)
    results = doubling_model.run_requests(
        [
            {"x": np.ones((1, 4), dtype=np.float32)},
            {"x": good},
            {"x": np.ones((1, 3), dtype=np.float64)},
            {"z": good},
            {"x": np.ones((9, 3), dtype=np.float32)},
        ]
    )
    assert isinstance(results[0], RequestError) and "shape [1, 4]" in str(results[0])
    assert isinstance(results[1], dict)
    np.testing.assert_array_equal(results[1]["y"], good * 2)
    assert isinstance(results[2], RequestError) and "float64" in str(results[2])
    assert isinstance(results[3], RequestError) and "expected inputs ['x']" in str(results[3])
    assert isinstance(results[4], RequestError) and "max_batch_size 8" in str(results[4])


@pytest.fixture(scope="module")
def echo_text_model(tmp_path_factory: pytest.TempPathFactory) -> OrtModel:
    text = helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", 1])
    echo = helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch", 1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])], "e", [text], [echo]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = Path(tmp_path_factory.mktemp("ort")) / "model.onnx"
    onnx.save(model, str(path))
    return OrtModel(
        path,
        inputs=[TensorSpec("text", "TYPE_STRING", (1,))],
        outputs=[TensorSpec("echo", "TYPE_STRING", (1,))],
    )


def test_string_inputs_arrive_as_bytes_and_are_decoded(echo_text_model: OrtModel) -> None:
    ok, bad = echo_text_model.run_requests(
        [
            {"text": np.array([["héllo".encode()], [b"world"]], dtype=object)},
            {"text": np.array([[b"\xff\xfe"]], dtype=object)},
        ]
    )
    assert isinstance(ok, dict)
    assert ok["echo"].tolist() == [["héllo"], ["world"]]
    assert isinstance(bad, RequestError) and "not valid UTF-8" in str(bad)
