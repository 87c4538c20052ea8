"""ONNX Runtime execution shared by the Triton Python-based backend and the in-process client.

One :class:`OrtModel` per loaded model. :meth:`OrtModel.run_requests` takes several requests,
checks each one on its own, runs the valid ones as a single ONNX Runtime call and splits the
outputs back, so one bad request fails alone while the others still share the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serving.specs import TRITON_TO_NUMPY, TensorSpec

logger = logging.getLogger(__name__)

ProviderEntry = str | tuple[str, dict[str, str]]


class RequestError(ValueError):
    """A single request's inputs cannot be run (wrong name, type or shape, undecodable text)."""


def tensor_from_config(entry: Mapping[str, Any]) -> TensorSpec:
    """A tensor from one ``input``/``output`` entry of Triton's JSON model configuration."""
    reshape = entry.get("reshape")
    return TensorSpec(
        name=entry["name"],
        data_type=entry["data_type"],
        dims=tuple(int(d) for d in entry["dims"]),
        graph_dims=tuple(int(d) for d in reshape.get("shape", [])) if reshape else None,
    )


def _item_shape_matches(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    return len(shape) == len(spec.dims) and all(
        want == -1 or got == want for got, want in zip(shape, spec.dims, strict=True)
    )


def choose_providers(
    instance_kind: str,
    device_id: int,
    gpu_accelerators: Sequence[Mapping[str, Any]],
    available: Sequence[str],
) -> list[ProviderEntry]:
    """Execution providers for one model instance, best first, CPU always last.

    ``instance_kind`` is Triton's (``GPU``/``CPU``, with or without the ``KIND_`` prefix);
    ``gpu_accelerators`` is the config's ``optimization.execution_accelerators
    .gpu_execution_accelerator`` list. GPU providers are used only when ONNX Runtime has them.
    """
    providers: list[ProviderEntry] = []
    if instance_kind.removeprefix("KIND_").upper() == "GPU":
        for accelerator in gpu_accelerators:
            if accelerator.get("name") == "tensorrt" and "TensorrtExecutionProvider" in available:
                options = _tensorrt_options(accelerator, device_id)
                providers.append(("TensorrtExecutionProvider", options))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": str(device_id)}))
    providers.append("CPUExecutionProvider")
    return providers


def _tensorrt_options(accelerator: Mapping[str, Any], device_id: int) -> dict[str, str]:
    params: Mapping[str, str] = accelerator.get("parameters", {})
    options = {"device_id": str(device_id)}
    if params.get("precision_mode", "").upper() == "FP16":
        options["trt_fp16_enable"] = "True"
    if "max_workspace_size_bytes" in params:
        options["trt_max_workspace_size"] = params["max_workspace_size_bytes"]
    if params.get("trt_engine_cache_enable") in {"1", "true", "True"}:
        options["trt_engine_cache_enable"] = "True"
        options["trt_engine_cache_path"] = params.get("trt_engine_cache_path", "/engine_cache")
    return options


def _int_parameter(config: Mapping[str, Any], key: str) -> int:
    """A numeric ``parameters`` entry of a Triton config (the ORT backend's keys), 0 if absent."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "0")
    return int(value)


def provider_names(providers: Sequence[ProviderEntry]) -> list[str]:
    return [p if isinstance(p, str) else p[0] for p in providers]


class OrtModel:
    """An ONNX model loaded in ONNX Runtime, run request-batch at a time."""

    def __init__(
        self,
        model_path: Path,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        providers: Sequence[ProviderEntry] = ("CPUExecutionProvider",),
        max_batch_size: int = 0,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> None:
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.max_batch_size = max_batch_size
        self.requested_providers = tuple(providers)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads  # 0: ONNX Runtime's default (all cores)
        options.inter_op_num_threads = inter_op_threads
        # Pool threads spin while waiting for work (ONNX Runtime's default). Measured with the
        # streams benchmark: one camera stream through Triton reached 107, 97, 99 and 85 % of the
        # in-process single-image rate with spinning and 95, 86, 83, 97, 87 and 86 % without,
        # while Triton used 1.87 instead of 1.6 cores; four streams (batch 4) and interleaved
        # in-process batch-4 calls showed no difference. Single-threaded models (text) have no
        # pool to spin.
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=list(providers)
        )
        self._output_names = [spec.name for spec in self.outputs]

    @classmethod
    def from_triton_config(
        cls,
        model_path: Path,
        config: Mapping[str, Any],
        instance_kind: str = "CPU",
        device_id: int = 0,
    ) -> OrtModel:
        """Load a model described by Triton's JSON model configuration."""
        accelerators = (
            config.get("optimization", {})
            .get("execution_accelerators", {})
            .get("gpu_execution_accelerator", [])
        )
        providers = choose_providers(
            instance_kind, device_id, accelerators, ort.get_available_providers()
        )
        return cls(
            model_path,
            [tensor_from_config(entry) for entry in config["input"]],
            [tensor_from_config(entry) for entry in config["output"]],
            providers=providers,
            max_batch_size=int(config.get("max_batch_size", 0)),
            intra_op_threads=_int_parameter(config, "intra_op_thread_count"),
            inter_op_threads=_int_parameter(config, "inter_op_thread_count"),
        )

    @property
    def active_providers(self) -> list[str]:
        return list(self.session.get_providers())

    def _checked(self, request: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A request's inputs converted to what the graph takes, or :class:`RequestError`."""
        missing = [spec.name for spec in self.inputs if spec.name not in request]
        unexpected = sorted(set(request) - {spec.name for spec in self.inputs})
        if missing or unexpected:
            expected = [spec.name for spec in self.inputs]
            raise RequestError(f"expected inputs {expected}, got {sorted(request)}")
        feeds: dict[str, np.ndarray] = {}
        rows: set[int] = set()
        for spec in self.inputs:
            array = np.asarray(request[spec.name])
            if array.ndim < 1 or not _item_shape_matches(spec, tuple(array.shape[1:])):
                raise RequestError(
                    f"input {spec.name!r}: shape {list(array.shape)}, expected [batch, "
                    f"{', '.join(map(str, spec.dims))}]"
                )
            rows.add(int(array.shape[0]))
            feeds[spec.name] = _to_graph_dtype(spec, array)
            if spec.graph_dims is not None:
                feeds[spec.name] = feeds[spec.name].reshape((array.shape[0], *spec.graph_dims))
        if len(rows) != 1 or 0 in rows:
            raise RequestError(f"inputs must share one non-zero batch size, got {sorted(rows)}")
        if self.max_batch_size and rows.pop() > self.max_batch_size:
            raise RequestError(f"batch larger than max_batch_size {self.max_batch_size}")
        return feeds

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ONNX Runtime call; outputs shaped as the configuration declares them."""
        results = self.session.run(self._output_names, dict(feeds))
        outputs = {}
        for spec, value in zip(self.outputs, results, strict=True):
            outputs[spec.name] = np.asarray(value).reshape((value.shape[0], *spec.dims))
        return outputs

    def run_requests(
        self, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> list[dict[str, np.ndarray] | RequestError]:
        """Run many requests as one call; one result (outputs or the request's error) each."""
        results: list[dict[str, np.ndarray] | RequestError] = []
        valid: list[tuple[int, dict[str, np.ndarray]]] = []
        for index, request in enumerate(requests):
            try:
                valid.append((index, self._checked(request)))
                results.append(RequestError("not run"))
            except RequestError as error:
                results.append(error)
        if not valid:
            return results
        try:
            merged = self.run(_concatenate([feeds for _, feeds in valid]))
        except Exception:  # one request's content made ORT fail: run each alone to isolate it
            logger.warning("batched ORT call failed; running %d requests one by one", len(valid))
            for index, feeds in valid:
                results[index] = _run_alone(self.run, feeds)
            return results
        offset = 0
        for index, feeds in valid:
            rows = next(iter(feeds.values())).shape[0]
            results[index] = {name: value[offset : offset + rows] for name, value in merged.items()}
            offset += rows
        return results


def _run_alone(
    run: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    feeds: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray] | RequestError:
    try:
        return run(feeds)
    except Exception as error:
        return RequestError(f"inference failed: {error}")


def _concatenate(batches: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(batches) == 1:
        return dict(batches[0])
    return {name: np.concatenate([b[name] for b in batches], axis=0) for name in batches[0]}


def _to_graph_dtype(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    if spec.data_type == "TYPE_STRING":
        return _decode_strings(spec.name, array)
    dtype = TRITON_TO_NUMPY.get(spec.data_type)
    if dtype is None:
        raise RequestError(f"input {spec.name!r}: unsupported type {spec.data_type}")
    if array.dtype != dtype:
        raise RequestError(f"input {spec.name!r}: dtype {array.dtype}, expected {np.dtype(dtype)}")
    return array


def _decode_strings(name: str, array: np.ndarray) -> np.ndarray:
    """Triton hands strings over as bytes; ONNX Runtime wants ``str`` objects."""
    decoded = np.empty(array.shape, dtype=object)
    for position, value in np.ndenumerate(array):
        if isinstance(value, bytes | np.bytes_):
            try:
                decoded[position] = bytes(value).decode("utf-8")
            except UnicodeDecodeError as error:
                raise RequestError(f"input {name!r} is not valid UTF-8: {error}") from error
        elif isinstance(value, str):
            decoded[position] = value
        else:
            raise RequestError(f"input {name!r}: expected strings, got {type(value).__name__}")
    return decoded
