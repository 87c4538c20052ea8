"""YOLOS's rescale, normalisation and padding as ONNX nodes in front of optimum's graph.

The served model takes what the API has after decoding and resizing an image, with no float
work: ``pixels`` uint8 [batch, 480, 640, 3] (Pillow's/numpy's layout; the area outside the
content may hold anything) and ``content_size`` int32 [batch, 2], the (height, width) of the
resized content at the top left. :func:`add_preprocessing` prepends to optimum's graph, whose
input ``pixel_values`` becomes an intermediate tensor::

    pixels ─ Cast(float) ─ Transpose(0,3,1,2) ─ Div 255 ─ Sub mean ─ Div std ─┐
                                                           Where(inside, ·, 0) ─▶ pixel_values
    content_size ─ Slice h, w ─ (row < h) And (col < w) ─▶ inside ───┘

The arithmetic is YolosImageProcessor's, in its dtypes, so the result is bit-identical to it:
``float32(x) / 255`` equals the processor's ``float32(float64(x) * (1 / 255))`` for all 256 byte
values (checked by :func:`check_rescale_is_exact`; multiplying by ``float32(1 / 255)`` would not
be: 126 values differ by an ulp), then float32 ``(x - mean) / std``, IEEE operations in both
numpy and ONNX Runtime. The padding is +0.0 AFTER normalisation, as the processor pads: ``Where``
selects it. (Multiplying by a 0/1 mask is faster, 0.9 vs 1.2 ms for a 640x480 frame, but gives
-0.0 where the normalised value is negative, and ONNX Runtime's optimiser removes the ``Add 0``
that would fix the sign.) The per-channel constants broadcast over whole NCHW planes, far faster
in ONNX Runtime than over NHWC's innermost axis of 3. Measured on this project's 2-core CPU
machine: the whole prefix takes about 1.2 ms for one image and 2 ms per image at batch 8 (the
API's numpy normalisation took 7.4 ms per image).

The uint8 input goes straight into a Cast to float, the one conversion TensorRT (8.5+) supports
on a UINT8 network input; see model_repository/yolos/config.pbtxt for the GPU notes.

onnx is imported here at module level: only the export (and its tests) import this module.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.repository import ONNX_ELEM_TYPES
from serving.specs import (
    YOLOS_CONTENT_SIZE,
    YOLOS_IMAGE_MEAN,
    YOLOS_IMAGE_STD,
    YOLOS_INPUT_HEIGHT,
    YOLOS_INPUT_WIDTH,
    YOLOS_PIXEL_VALUES,
    YOLOS_PIXELS,
    TensorSpec,
)

# Names of everything this module adds to the graph start with this prefix.
PREFIX: Final = "tritongate_preprocess/"
# Slice with tensor inputs and uint8 Transpose/Cast: the graph's own opset is kept, so it must
# be at least this (optimum exports YOLOS at 18).
MIN_OPSET: Final = 13


class PreprocessingGraphError(ValueError):
    """The graph cannot take the pre-processing (unexpected input, name clash)."""


def rescaled_like_processor(pixels: np.ndarray) -> np.ndarray:
    """YolosImageProcessor's rescale of uint8 values: float64 times 1/255, cast to float32."""
    return (np.asarray(pixels).astype(np.float64) * (1 / 255)).astype(np.float32)


def normalised_like_processor(pixels: np.ndarray, content_sizes: np.ndarray) -> np.ndarray:
    """The processor's ``pixel_values`` for a batch of served inputs, in numpy: float32
    [batch, 3, 480, 640], rescaled, normalised, zero outside each item's content."""
    pixels = np.asarray(pixels)
    mean = np.asarray(YOLOS_IMAGE_MEAN, dtype=np.float32)
    std = np.asarray(YOLOS_IMAGE_STD, dtype=np.float32)
    normalised = (rescaled_like_processor(pixels) - mean) / std
    output = np.zeros((len(pixels), 3, YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH), dtype=np.float32)
    for index, (height, width) in enumerate(np.asarray(content_sizes)):
        height, width = max(0, int(height)), max(0, int(width))
        output[index, :, :height, :width] = normalised[index, :height, :width].transpose(2, 0, 1)
    return output


def check_rescale_is_exact() -> None:
    """Raise if float32 ``x / 255`` differs from the processor's rescale for any byte value."""
    values = np.arange(256, dtype=np.uint8)
    in_graph = values.astype(np.float32) / np.float32(255)
    if not np.array_equal(
        in_graph.view(np.uint32), rescaled_like_processor(values).view(np.uint32)
    ):
        raise PreprocessingGraphError("float32 division by 255 no longer matches the processor")


def _value_info(spec: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        spec.name, ONNX_ELEM_TYPES[spec.data_type], ["batch", *spec.onnx_dims]
    )


def preprocessing_nodes() -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes (in topological order) and initialisers that compute ``pixel_values``."""
    check_rescale_is_exact()

    def name(local: str) -> str:
        return PREFIX + local

    def constant(local: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name(local))

    channel_shape = (1, 3, 1, 1)
    initializers = [
        constant("255", np.array(255, dtype=np.float32)),
        constant("mean", np.asarray(YOLOS_IMAGE_MEAN, dtype=np.float32).reshape(channel_shape)),
        constant("std", np.asarray(YOLOS_IMAGE_STD, dtype=np.float32).reshape(channel_shape)),
        constant("zero", np.array(0, dtype=np.float32)),
        constant("rows", np.arange(YOLOS_INPUT_HEIGHT, dtype=np.int32).reshape(1, 1, -1, 1)),
        constant("cols", np.arange(YOLOS_INPUT_WIDTH, dtype=np.int32).reshape(1, 1, 1, -1)),
        constant("index_0", np.array([0], dtype=np.int64)),
        constant("index_1", np.array([1], dtype=np.int64)),
        constant("index_2", np.array([2], dtype=np.int64)),
        constant("item_shape", np.array([-1, 1, 1, 1], dtype=np.int64)),
    ]
    pixels, size = YOLOS_PIXELS.name, YOLOS_CONTENT_SIZE.name

    def node(op: str, inputs: list[str], output: str, **attributes: object) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=name(output), **attributes)

    nodes = [
        # Inside the content [batch, 1, 480, 640]: row < height and column < width.
        node("Slice", [size, name("index_0"), name("index_1"), name("index_1")], name("height")),
        node("Slice", [size, name("index_1"), name("index_2"), name("index_1")], name("width")),
        node("Reshape", [name("height"), name("item_shape")], name("height_4d")),
        node("Reshape", [name("width"), name("item_shape")], name("width_4d")),
        node("Less", [name("rows"), name("height_4d")], name("row_inside")),
        node("Less", [name("cols"), name("width_4d")], name("col_inside")),
        node("And", [name("row_inside"), name("col_inside")], name("inside")),
        # The pixels: NHWC uint8 → NCHW float32, rescaled, normalised, +0.0 outside the content.
        # Cast first: the one conversion TensorRT supports on a uint8 network input.
        node("Cast", [pixels], name("float"), to=TensorProto.FLOAT),
        node("Transpose", [name("float")], name("nchw"), perm=[0, 3, 1, 2]),
        node("Div", [name("nchw"), name("255")], name("rescaled")),
        node("Sub", [name("rescaled"), name("mean")], name("centred")),
        node("Div", [name("centred"), name("std")], name("normalised")),
        node("Where", [name("inside"), name("normalised"), name("zero")], YOLOS_PIXEL_VALUES.name),
    ]
    return nodes, initializers


def add_preprocessing(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of optimum's YOLOS graph that takes the served uint8 inputs (see module docstring).

    ``model``'s only input must be ``pixel_values`` (float, rank 4); it becomes an intermediate
    tensor fed by the pre-processing nodes. Opset, IR version and metadata are kept.
    """
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in initializer_names]
    target = YOLOS_PIXEL_VALUES.name
    if [vi.name for vi in inputs] != [target]:
        raise PreprocessingGraphError(
            f"expected the exported graph's only input to be {target!r}, got "
            f"{[vi.name for vi in inputs]}"
        )
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != TensorProto.FLOAT or len(tensor_type.shape.dim) != 4:
        raise PreprocessingGraphError(f"{target!r} is not a rank-4 float tensor")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise PreprocessingGraphError(f"opset {opset}: the pre-processing needs {MIN_OPSET}+")
    nodes, initializers = preprocessing_nodes()
    used = initializer_names | {out for n in graph.node for out in (*n.input, *n.output)}
    clashes = sorted(
        n
        for n in (*(i.name for i in initializers), *(out for nd in nodes for out in nd.output))
        if n in used and n != target
    )
    if clashes:
        raise PreprocessingGraphError(f"names already in the graph: {clashes}")

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    kept_inputs = [vi for vi in graph.input if vi.name != target]
    del graph.input[:]
    graph.input.extend([_value_info(YOLOS_PIXELS), _value_info(YOLOS_CONTENT_SIZE), *kept_inputs])
    graph.value_info.append(_value_info(YOLOS_PIXEL_VALUES))
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    graph.initializer.extend(initializers)
    onnx.checker.check_model(result)
    return result


def with_pixel_values_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a served YOLOS graph that also outputs its intermediate ``pixel_values``
    (for the export's checks: the normalised tensor the transformer actually receives)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    result.graph.output.append(_value_info(YOLOS_PIXEL_VALUES))
    return result
