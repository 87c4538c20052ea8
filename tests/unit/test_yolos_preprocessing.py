"""export.yolos_preprocessing: the uint8 → normalised pre-processing inside the served graph.

Run in ONNX Runtime on a stand-in for optimum's graph (an Identity that outputs what it gets as
``pixel_values``), so these tests need no torch and no export.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from export.repository import check_onnx_against_spec
from export.yolos_preprocessing import (
    PREFIX,
    PreprocessingGraphError,
    add_preprocessing,
    check_rescale_is_exact,
    normalised_like_processor,
    rescaled_like_processor,
    with_pixel_values_output,
)
from serving.specs import YOLOS, YOLOS_IMAGE_MEAN, YOLOS_IMAGE_STD, ModelSpec

HEIGHT, WIDTH = 480, 640


def _stand_in(input_name: str = "pixel_values", opset: int = 18) -> onnx.ModelProto:
    """optimum's interface, with ``echo`` = its input instead of a transformer."""
    pixel_values = helper.make_tensor_value_info(
        input_name, TensorProto.FLOAT, ["batch_size", "num_channels", "height", "width"]
    )
    echo = helper.make_tensor_value_info("echo", TensorProto.FLOAT, ["batch_size", 3, "h", "w"])
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], ["echo"])], "stand_in", [pixel_values], [echo]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as OrtModel
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return _session(add_preprocessing(_stand_in()))


def _run(session: ort.InferenceSession, pixels: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    (output,) = session.run(["echo"], {"pixels": pixels, "content_size": sizes})
    return output


def _bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def test_rescale_by_division_is_the_processors_for_every_byte() -> None:
    check_rescale_is_exact()
    values = np.arange(256, dtype=np.uint8)
    expected = (values.astype(np.float64) * (1 / 255)).astype(np.float32)
    np.testing.assert_array_equal(_bits(rescaled_like_processor(values)), _bits(expected))


def test_every_byte_in_every_channel_is_normalised_bit_for_bit(
    session: ort.InferenceSession,
) -> None:
    # 256 x 3 pixels in a full frame: each row holds every byte value in each channel.
    values = np.arange(256, dtype=np.uint8)
    pixels = np.zeros((1, HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[0, :3, :256] = np.stack([np.roll(values, shift) for shift in (0, 85, 170)], axis=-1)
    sizes = np.array([[HEIGHT, WIDTH]], dtype=np.int32)
    output = _run(session, pixels, sizes)
    assert output.shape == (1, 3, HEIGHT, WIDTH) and output.dtype == np.float32
    np.testing.assert_array_equal(_bits(output), _bits(normalised_like_processor(pixels, sizes)))
    # The processor's formula, spelled out for one pixel.
    mean = np.asarray(YOLOS_IMAGE_MEAN, dtype=np.float32)
    std = np.asarray(YOLOS_IMAGE_STD, dtype=np.float32)
    expected = (rescaled_like_processor(pixels[0, 1, 7]) - mean) / std
    np.testing.assert_array_equal(output[0, :, 1, 7], expected)


@pytest.mark.parametrize(
    "sizes",
    [
        [[480, 640], [320, 640], [480, 360], [1, 1], [0, 0], [17, 33]],
        [[480, 640]],
    ],
    ids=["mixed-batch", "full-frame"],
)
def test_padding_is_positive_zero_after_normalisation(
    session: ort.InferenceSession, sizes: list[list[int]]
) -> None:
    rng = np.random.default_rng(3)
    size_array = np.asarray(sizes, dtype=np.int32)
    pixels = rng.integers(0, 256, (len(sizes), HEIGHT, WIDTH, 3), dtype=np.uint8)
    output = _run(session, pixels, size_array)
    expected = normalised_like_processor(pixels, size_array)
    np.testing.assert_array_equal(_bits(output), _bits(expected))  # +0.0, never -0.0
    for item, (height, width) in enumerate(sizes):
        assert not output[item, :, height:, :].any()
        assert not output[item, :, :, width:].any()
        assert not np.signbit(output[item, :, height:, :]).any()


def test_the_padded_bytes_do_not_matter(session: ort.InferenceSession) -> None:
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)
    noisy = pixels.copy()
    noisy[0, 200:] = 255
    sizes = np.array([[200, WIDTH]], dtype=np.int32)
    np.testing.assert_array_equal(_run(session, pixels, sizes), _run(session, noisy, sizes))


def test_served_graph_has_the_specs_inputs_and_keeps_opset_and_outputs() -> None:
    original = _stand_in()
    served = add_preprocessing(original)
    stand_in_spec = ModelSpec("stand_in", YOLOS.inputs, ())
    served_without_echo = onnx.ModelProto()
    served_without_echo.CopyFrom(served)
    del served_without_echo.graph.output[:]
    check_onnx_against_spec(served_without_echo, stand_in_spec)
    assert [o.name for o in served.graph.output] == ["echo"]
    assert list(served.opset_import) == list(original.opset_import)
    assert served.ir_version == original.ir_version
    added = [node.name for node in served.graph.node if node.name.startswith(PREFIX)]
    assert len(added) == len(served.graph.node) - 1
    assert [i.name for i in original.graph.input] == ["pixel_values"], "input left untouched"


def test_pixel_values_output_exposes_the_normalised_tensor() -> None:
    model = with_pixel_values_output(add_preprocessing(_stand_in()))
    pixels = np.full((1, HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    sizes = np.array([[10, 20]], dtype=np.int32)
    echo, pixel_values = _session(model).run(
        ["echo", "pixel_values"], {"pixels": pixels, "content_size": sizes}
    )
    np.testing.assert_array_equal(echo, pixel_values)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_stand_in(input_name="images"), "only input to be 'pixel_values'"),
        (_stand_in(opset=11), "opset 11"),
    ],
)
def test_unexpected_graphs_are_refused(model: onnx.ModelProto, message: str) -> None:
    with pytest.raises(PreprocessingGraphError, match=message):
        add_preprocessing(model)


def test_name_clashes_are_refused() -> None:
    model = _stand_in()
    model.graph.node[0].output[0] = PREFIX + "inside"
    model.graph.output[0].name = PREFIX + "inside"
    with pytest.raises(PreprocessingGraphError, match="already in the graph"):
        add_preprocessing(model)
