"""The committed model repository: configs parse, match serving/specs.py, GPU and CPU agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from serving.model_config import (
    ModelConfig,
    ModelConfigError,
    check_config_against_spec,
    config_path,
    load_model_config,
)
from serving.specs import MODEL_SPECS, NEWSGROUPS, YOLOS

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
MODELS = sorted(MODEL_SPECS)


def _kind(value: int) -> str:
    return model_config_pb2.ModelInstanceGroup.Kind.Name(value)


def _load(model: str, variant: str | None) -> ModelConfig:
    return load_model_config(config_path(REPOSITORY / model, variant))


@pytest.mark.parametrize("variant", [None, "cpu"])
@pytest.mark.parametrize("model", MODELS)
def test_committed_config_matches_spec(model: str, variant: str | None) -> None:
    config = _load(model, variant)
    check_config_against_spec(config, MODEL_SPECS[model])
    assert config.backend == "onnxruntime"
    assert config.max_batch_size > 1
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert all(
        size <= config.max_batch_size for size in config.dynamic_batching.preferred_batch_size
    )


@pytest.mark.parametrize("model", MODELS)
def test_gpu_config_uses_gpu_instances_and_cpu_variant_cpu(model: str) -> None:
    gpu, cpu = _load(model, None), _load(model, "cpu")
    assert [_kind(group.kind) for group in gpu.instance_group] == ["KIND_GPU"]
    assert [_kind(group.kind) for group in cpu.instance_group] == ["KIND_CPU"]
    assert not cpu.HasField("optimization"), "the CPU variant must not ask for GPU accelerators"


@pytest.mark.parametrize("model", MODELS)
def test_variants_differ_only_in_placement(model: str) -> None:
    """Same interface and batching; placement differs, and so may warm-up: on the GPU it makes
    TensorRT build its engine before the model is ready, on the CPU there is nothing to build."""
    gpu, cpu = _load(model, None), _load(model, "cpu")
    for config in (gpu, cpu):
        config.ClearField("instance_group")
        config.ClearField("optimization")
        config.ClearField("model_warmup")
    assert gpu == cpu


def test_yolos_gpu_warmup_covers_batch_one_to_max_with_the_real_input() -> None:
    config = _load("yolos", None)
    assert not _load("yolos", "cpu").model_warmup
    assert [sample.batch_size for sample in config.model_warmup] == [1, config.max_batch_size]
    declared = {entry.name: entry for entry in config.input}
    for sample in config.model_warmup:
        assert set(sample.inputs) == {spec.name for spec in YOLOS.inputs}
        for name, tensor in sample.inputs.items():
            assert list(tensor.dims) == list(declared[name].dims)
            assert tensor.data_type == declared[name].data_type
            assert tensor.zero_data


def test_yolos_gpu_config_runs_tensorrt_fp16_with_engine_cache() -> None:
    accelerators = _load("yolos", None).optimization.execution_accelerators
    (tensorrt,) = accelerators.gpu_execution_accelerator
    assert tensorrt.name == "tensorrt"
    assert tensorrt.parameters["precision_mode"] == "FP16"
    assert tensorrt.parameters["trt_engine_cache_enable"] == "1"
    assert tensorrt.parameters["trt_engine_cache_path"].startswith("/")


def test_newsgroups_label_output_is_reshaped_for_the_batch_dimension() -> None:
    label = next(o for o in _load("newsgroups", None).output if o.name == "label")
    assert list(label.dims) == [1]
    assert list(label.reshape.shape) == []
    assert NEWSGROUPS.output("label").graph_dims == ()


def test_check_reports_every_mismatch() -> None:
    config = _load("yolos", "cpu")
    config.input[0].name = "images"
    config.output[0].dims[0] = 50
    with pytest.raises(ModelConfigError) as raised:
        check_config_against_spec(config, YOLOS)
    message = str(raised.value)
    assert "missing input 'pixels'" in message
    assert "unexpected input 'images'" in message
    assert "output 'logits': dims [50, 92]" in message
