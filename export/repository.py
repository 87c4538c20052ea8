"""Writing exported models into a Triton model repository and validating them there.

The layout is :mod:`serving.model_repository`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from serving.model_config import (
    ModelConfigError,
    check_config_against_spec,
    config_path,
    load_model_config,
)
from serving.model_repository import LABELS_FILENAME, MODEL_FILENAME, PROVENANCE_FILENAME
from serving.specs import ModelSpec, TensorSpec

ONNX_ELEM_TYPES: dict[str, int] = {
    "TYPE_STRING": onnx.TensorProto.STRING,
    "TYPE_FP32": onnx.TensorProto.FLOAT,
    "TYPE_INT64": onnx.TensorProto.INT64,
    "TYPE_INT32": onnx.TensorProto.INT32,
    "TYPE_UINT8": onnx.TensorProto.UINT8,
}


@dataclass(frozen=True)
class ExportedModel:
    """Where one export landed."""

    name: str
    version: int
    model_path: Path
    labels_path: Path
    provenance_path: Path


def _graph_tensor_problems(
    kind: str, spec: TensorSpec, value_info: onnx.ValueInfoProto
) -> list[str]:
    problems = []
    tensor_type = value_info.type.tensor_type
    expected_elem = ONNX_ELEM_TYPES[spec.data_type]
    if tensor_type.elem_type != expected_elem:
        problems.append(
            f"{kind} {spec.name!r}: ONNX element type "
            f"{onnx.TensorProto.DataType.Name(tensor_type.elem_type)}, expected "
            f"{onnx.TensorProto.DataType.Name(expected_elem)} for {spec.data_type}"
        )
    dims = list(tensor_type.shape.dim)
    expected = spec.onnx_dims
    if len(dims) != len(expected) + 1:
        problems.append(
            f"{kind} {spec.name!r}: ONNX rank {len(dims)}, expected {len(expected) + 1} "
            f"(batch + {list(expected)})"
        )
        return problems
    batch = dims[0]
    if batch.HasField("dim_value") and batch.dim_value > 0:
        problems.append(f"{kind} {spec.name!r}: batch dimension is fixed at {batch.dim_value}")
    for axis, (dim, want) in enumerate(zip(dims[1:], expected, strict=True), start=1):
        if dim.HasField("dim_value") and dim.dim_value != want:
            problems.append(
                f"{kind} {spec.name!r}: axis {axis} is {dim.dim_value}, expected {want}"
            )
    return problems


def check_onnx_against_spec(model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Raise :class:`ModelConfigError` if the graph's I/O names, types or shapes differ."""
    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = {vi.name: vi for vi in model.graph.input if vi.name not in initializers}
    graph_outputs = {vi.name: vi for vi in model.graph.output}
    problems: list[str] = []
    for kind, graph, tensors in (
        ("input", graph_inputs, spec.inputs),
        ("output", graph_outputs, spec.outputs),
    ):
        expected = {t.name for t in tensors}
        for extra in sorted(set(graph) - expected):
            problems.append(f"graph has unexpected {kind} {extra!r}")
        for tensor in tensors:
            if tensor.name not in graph:
                problems.append(f"graph lacks {kind} {tensor.name!r}")
            else:
                problems.extend(_graph_tensor_problems(kind, tensor, graph[tensor.name]))
    if problems:
        raise ModelConfigError(f"{spec.name} ONNX graph: " + "; ".join(problems))


def validate_model_dir(model_dir: Path, spec: ModelSpec, version: int) -> None:
    """Check every committed config and the exported graph of one model against its spec."""
    for config_name in (None, "cpu"):
        path = config_path(model_dir, config_name)
        if path.exists():
            check_config_against_spec(load_model_config(path), spec)
    model = onnx.load(str(model_dir / str(version) / MODEL_FILENAME), load_external_data=False)
    check_onnx_against_spec(model, spec)


def write_model(
    repository: Path,
    spec: ModelSpec,
    model: onnx.ModelProto,
    labels: list[str],
    provenance: dict[str, Any],
    version: int = 1,
) -> ExportedModel:
    """Write ``model``, its labels and provenance into ``repository`` and validate the result.

    The committed ``config.pbtxt`` must already be in place: the export checks against it
    rather than generating it.
    """
    model_dir = repository / spec.name
    if not config_path(model_dir).exists():
        raise FileNotFoundError(
            f"{config_path(model_dir)} is missing: the model repository's committed configs "
            "must be in place before an export writes into it"
        )
    check_onnx_against_spec(model, spec)
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    model_path = version_dir / MODEL_FILENAME
    onnx.save(model, str(model_path))
    labels_path = model_dir / LABELS_FILENAME
    labels_path.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    provenance_path = version_dir / PROVENANCE_FILENAME
    provenance_path.write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    validate_model_dir(model_dir, spec, version)
    return ExportedModel(spec.name, version, model_path, labels_path, provenance_path)
