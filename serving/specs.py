"""Tensor names, types and shapes of every served model: the single source of truth.

Export code names the ONNX graph's tensors from these specs, the committed ``config.pbtxt``
files are checked against them, and the serving code builds requests from them.
Shapes exclude the batch dimension (Triton's convention when ``max_batch_size > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

# Triton config data types → numpy dtypes (strings travel as numpy object arrays of bytes).
TRITON_TO_NUMPY: Final[dict[str, type[np.generic]]] = {
    "TYPE_STRING": np.object_,
    "TYPE_FP32": np.float32,
    "TYPE_FP16": np.float16,
    "TYPE_INT64": np.int64,
    "TYPE_INT32": np.int32,
    "TYPE_UINT8": np.uint8,
}
# Triton config data types → the wire names used by the inference protocol (tritonclient).
TRITON_TO_WIRE: Final[dict[str, str]] = {
    "TYPE_STRING": "BYTES",
    "TYPE_FP32": "FP32",
    "TYPE_FP16": "FP16",
    "TYPE_INT64": "INT64",
    "TYPE_INT32": "INT32",
    "TYPE_UINT8": "UINT8",
}


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model, per batch item."""

    name: str
    data_type: str  # Triton config type, e.g. "TYPE_FP32"
    dims: tuple[int, ...]  # per item, batch dimension excluded
    # Shape of the tensor inside the ONNX graph per item when it differs from ``dims``
    # (Triton's ``reshape``): a ``[batch]`` label output is declared ``dims: [1]``.
    graph_dims: tuple[int, ...] | None = None

    @property
    def numpy_dtype(self) -> type[np.generic]:
        return TRITON_TO_NUMPY[self.data_type]

    @property
    def wire_type(self) -> str:
        return TRITON_TO_WIRE[self.data_type]

    @property
    def onnx_dims(self) -> tuple[int, ...]:
        return self.dims if self.graph_dims is None else self.graph_dims


@dataclass(frozen=True)
class ModelSpec:
    """A served model's interface."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name)

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name)


def _by_name(tensors: tuple[TensorSpec, ...], name: str) -> TensorSpec:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise KeyError(name)


# --- 20 Newsgroups text classifier -------------------------------------------------------------

NEWSGROUPS_CATEGORIES: Final[tuple[str, ...]] = (
    "soc.religion.christian",
    "talk.religion.misc",
    "comp.sys.mac.hardware",
    "sci.crypt",
)

NEWSGROUPS = ModelSpec(
    name="newsgroups",
    inputs=(TensorSpec("text", "TYPE_STRING", (1,)),),
    outputs=(
        TensorSpec("label", "TYPE_INT64", (1,), graph_dims=()),
        TensorSpec("probabilities", "TYPE_FP32", (len(NEWSGROUPS_CATEGORIES),)),
    ),
)

# --- YOLOS object detector ---------------------------------------------------------------------

# Fixed input resolution (height, width): 4:3 like the browser's 640x480 frames and most COCO and
# webcam images, so those need no resampling and no padding; divisible by the 16-pixel patch size.
YOLOS_INPUT_HEIGHT: Final = 480
YOLOS_INPUT_WIDTH: Final = 640
YOLOS_DETECTION_TOKENS: Final = 100
YOLOS_NUM_CLASSES: Final = 91  # COCO ids 0..90 as in hustvl/yolos-tiny's id2label
YOLOS_LOGITS: Final = YOLOS_NUM_CLASSES + 1  # + "no object"
# ImageNet normalisation used by YolosImageProcessor; applied inside the served ONNX graph.
YOLOS_IMAGE_MEAN: Final = (0.485, 0.456, 0.406)
YOLOS_IMAGE_STD: Final = (0.229, 0.224, 0.225)

# What YolosForObjectDetection (and optimum's ONNX export of it) takes: normalised float32 NCHW,
# zero-padded after normalisation. Inside the served graph it is an intermediate tensor, computed
# from the uint8 inputs below by the pre-processing that export/yolos_preprocessing.py prepends.
YOLOS_PIXEL_VALUES: Final = TensorSpec(
    "pixel_values", "TYPE_FP32", (3, YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH)
)

# The served interface: the resized image's RGB bytes as Pillow/numpy lay them out (height, width,
# channel), padded bottom/right to 480x640 with any value, and the (height, width) of the resized
# content in it; the graph rescales, normalises, zeroes the padding and transposes to NCHW.
# 0.9 MB per image on the wire instead of 3.7 MB of float32.
YOLOS_PIXELS: Final = TensorSpec("pixels", "TYPE_UINT8", (YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH, 3))
YOLOS_CONTENT_SIZE: Final = TensorSpec("content_size", "TYPE_INT32", (2,))

YOLOS = ModelSpec(
    name="yolos",
    inputs=(YOLOS_PIXELS, YOLOS_CONTENT_SIZE),
    outputs=(
        TensorSpec("logits", "TYPE_FP32", (YOLOS_DETECTION_TOKENS, YOLOS_LOGITS)),
        TensorSpec("pred_boxes", "TYPE_FP32", (YOLOS_DETECTION_TOKENS, 4)),
    ),
)

MODEL_SPECS: Final[dict[str, ModelSpec]] = {spec.name: spec for spec in (NEWSGROUPS, YOLOS)}
