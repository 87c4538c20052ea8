"""Reading Triton ``config.pbtxt`` files and checking them against :mod:`serving.specs`."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from serving.specs import ModelSpec, TensorSpec

ModelConfig = model_config_pb2.ModelConfig

CPU_CONFIG_NAME = "cpu"


class ModelConfigError(ValueError):
    """A model configuration disagrees with the model's declared interface."""


def config_path(model_dir: Path, config_name: str | None = None) -> Path:
    """The file Triton reads for ``--model-config-name=config_name`` (None: the default)."""
    if config_name:
        return model_dir / "configs" / f"{config_name}.pbtxt"
    return model_dir / "config.pbtxt"


def load_model_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def _type_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


def _tensor_problems(kind: str, spec: TensorSpec, entry: object) -> list[str]:
    problems = []
    data_type = _type_name(entry.data_type)  # type: ignore[attr-defined]
    dims = tuple(entry.dims)  # type: ignore[attr-defined]
    if data_type != spec.data_type:
        problems.append(f"{kind} {spec.name!r}: data_type {data_type}, expected {spec.data_type}")
    if dims != spec.dims:
        problems.append(f"{kind} {spec.name!r}: dims {list(dims)}, expected {list(spec.dims)}")
    has_reshape = entry.HasField("reshape")  # type: ignore[attr-defined]
    reshape = tuple(entry.reshape.shape) if has_reshape else None  # type: ignore[attr-defined]
    if reshape != spec.graph_dims:
        problems.append(
            f"{kind} {spec.name!r}: reshape {reshape}, expected {spec.graph_dims} "
            "(the graph's own per-item shape)"
        )
    return problems


def check_config_against_spec(config: model_config_pb2.ModelConfig, spec: ModelSpec) -> None:
    """Raise :class:`ModelConfigError` listing every mismatch between a config and a spec."""
    problems: list[str] = []
    if config.name != spec.name:
        problems.append(f"name {config.name!r}, expected {spec.name!r}")
    if config.max_batch_size < 1:
        problems.append("max_batch_size must be > 0: the serving layer batches along dim 0")
    for kind, declared, specs in (
        ("input", config.input, spec.inputs),
        ("output", config.output, spec.outputs),
    ):
        by_name = {entry.name: entry for entry in declared}
        expected = {tensor.name for tensor in specs}
        for extra in sorted(set(by_name) - expected):
            problems.append(f"unexpected {kind} {extra!r}")
        for tensor in specs:
            if tensor.name not in by_name:
                problems.append(f"missing {kind} {tensor.name!r}")
            else:
                problems.extend(_tensor_problems(kind, tensor, by_name[tensor.name]))
    if problems:
        raise ModelConfigError(f"{spec.name} config: " + "; ".join(problems))
