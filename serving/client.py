"""Inference clients: one small async interface, two implementations.

* :class:`TritonGrpcClient` talks to tritonserver over gRPC with ``tritonclient.grpc.aio``
  (create it inside the running event loop, one per worker process).
* :class:`InProcessOrtClient` runs the same model repository in this process with ONNX Runtime,
  for machines without the Triton binary and as the benchmarks' "no server" limit.

Both raise the typed errors of :mod:`serving.errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException

from serving.errors import (
    InferenceFailedError,
    InferenceTimeoutError,
    InferenceUnavailableError,
    InvalidInferenceInputError,
    ModelNotReadyError,
    ServingError,
)
from serving.model_config import config_path, load_model_config
from serving.model_repository import MODEL_FILENAME, model_versions
from serving.ort_runtime import OrtModel, RequestError, tensor_from_config
from serving.specs import MODEL_SPECS, TensorSpec


@dataclass(frozen=True)
class ModelInfo:
    """What the inference server says about one model."""

    name: str
    versions: tuple[str, ...]
    ready: bool
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    backend: str = ""
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class InferenceResult:
    outputs: dict[str, np.ndarray]
    model_version: str


class InferenceClient(Protocol):
    """The operations the serving layer needs from an inference backend."""

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        timeout: float | None = None,
    ) -> InferenceResult: ...

    async def server_ready(self) -> bool: ...

    async def model_ready(self, model: str) -> bool: ...

    async def model_info(self, model: str) -> ModelInfo: ...

    async def close(self) -> None: ...


def _info_from_config(config: Mapping[str, Any], versions: Sequence[str], ready: bool) -> ModelInfo:
    return ModelInfo(
        name=config["name"],
        versions=tuple(versions),
        ready=ready,
        max_batch_size=int(config.get("max_batch_size", 0)),
        inputs=tuple(tensor_from_config(entry) for entry in config.get("input", [])),
        outputs=tuple(tensor_from_config(entry) for entry in config.get("output", [])),
        backend=config.get("backend", ""),
        config=config,
    )


# --- Triton over gRPC ----------------------------------------------------------------------------

_UNAVAILABLE = {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"}
_MAX_MESSAGE_BYTES = 2**31 - 1  # a batch of 8 YOLOS inputs is ~30 MB, over gRPC's 4 MB default
# gRPC's default reconnect backoff grows to 120 s; a restarted Triton must be found within ~1 s.
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


def _translate(error: InferenceServerException, model: str) -> ServingError:
    status = error.status() or ""
    message = error.message() or str(error)
    if status in _UNAVAILABLE:
        return InferenceUnavailableError(f"Triton is unreachable: {message}")
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return InferenceTimeoutError(f"{model}: deadline exceeded")
    if "is not ready" in message or "unknown model" in message or "not found" in message:
        return ModelNotReadyError(f"{model}: {message}")
    if status == "StatusCode.INVALID_ARGUMENT":
        return InvalidInferenceInputError(f"{model}: {message}")
    return InferenceFailedError(f"{model}: {message}")


class TritonGrpcClient:
    """:class:`InferenceClient` over ``tritonclient.grpc.aio``."""

    def __init__(self, url: str) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.url = url
        self._client = grpcclient.InferenceServerClient(url, channel_args=_CHANNEL_ARGS)
        # model → output names to request: ours from the specs, others from the server's config.
        self._outputs: dict[str, list[str]] = {
            name: [output.name for output in spec.outputs] for name, spec in MODEL_SPECS.items()
        }

    async def _output_names(self, model: str) -> list[str]:
        if model not in self._outputs:
            info = await self.model_info(model)
            self._outputs[model] = [spec.name for spec in info.outputs]
        return self._outputs[model]

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        timeout: float | None = None,
    ) -> InferenceResult:
        grpc = self._grpc
        infer_inputs = []
        for name, array in inputs.items():
            wire = "BYTES" if array.dtype == np.object_ else _wire_type(array.dtype)
            infer_input = grpc.InferInput(name, list(array.shape), wire)
            infer_input.set_data_from_numpy(array)
            infer_inputs.append(infer_input)
        try:
            names = await self._output_names(model)
            result = await self._client.infer(
                model,
                infer_inputs,
                outputs=[grpc.InferRequestedOutput(name) for name in names],
                client_timeout=timeout,
            )
        except InferenceServerException as error:
            raise _translate(error, model) from error
        response = result.get_response()
        return InferenceResult(
            outputs={name: result.as_numpy(name) for name in names},
            model_version=response.model_version,
        )

    async def server_ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready(client_timeout=2.0))
        except InferenceServerException:
            return False

    async def model_ready(self, model: str) -> bool:
        try:
            return bool(await self._client.is_model_ready(model, client_timeout=2.0))
        except InferenceServerException:
            return False

    async def model_info(self, model: str) -> ModelInfo:
        try:
            reply = await self._client.get_model_config(model, client_timeout=5.0)
            metadata = await self._client.get_model_metadata(model, client_timeout=5.0)
        except InferenceServerException as error:
            raise _translate(error, model) from error
        config = json_format.MessageToDict(reply.config, preserving_proto_field_name=True)
        ready = await self.model_ready(model)
        return _info_from_config(config, list(metadata.versions), ready)

    async def inference_statistics(self, model: str) -> dict[str, int]:
        """Triton's cumulative counters for ``model``: inferences and (batched) executions."""
        try:
            reply = await self._client.get_inference_statistics(model, client_timeout=5.0)
        except InferenceServerException as error:
            raise _translate(error, model) from error
        stats = reply.model_stats
        return {
            "inference_count": sum(s.inference_count for s in stats),
            "execution_count": sum(s.execution_count for s in stats),
        }

    async def close(self) -> None:
        await self._client.close()


def _wire_type(dtype: np.dtype[Any]) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return str(np_to_triton_dtype(dtype))


# --- In-process ONNX Runtime ---------------------------------------------------------------------


class InProcessOrtClient:
    """:class:`InferenceClient` running the repository's newest versions with ONNX Runtime."""

    def __init__(
        self, repository: Path, models: Sequence[str], config_name: str | None = "cpu"
    ) -> None:
        self.repository = repository
        self._models: dict[str, tuple[OrtModel, ModelInfo]] = {}
        for name in models:
            self._models[name] = self._load(name, config_name)

    def _load(self, name: str, config_name: str | None) -> tuple[OrtModel, ModelInfo]:
        model_dir = self.repository / name
        path = config_path(model_dir, config_name)
        if not path.exists():
            path = config_path(model_dir)
        config = json_format.MessageToDict(
            load_model_config(path), preserving_proto_field_name=True
        )
        versions = model_versions(model_dir)
        if not versions:
            raise ModelNotReadyError(f"{name}: no exported model under {model_dir}")
        latest = versions[-1]
        model = OrtModel.from_triton_config(model_dir / str(latest) / MODEL_FILENAME, config)
        return model, _info_from_config(config, [str(latest)], ready=True)

    def _get(self, model: str) -> tuple[OrtModel, ModelInfo]:
        try:
            return self._models[model]
        except KeyError:
            raise ModelNotReadyError(f"{model}: not loaded in process") from None

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        timeout: float | None = None,
    ) -> InferenceResult:
        ort_model, info = self._get(model)
        run = asyncio.to_thread(ort_model.run_requests, [inputs])
        try:
            (result,) = await asyncio.wait_for(run, timeout)
        except TimeoutError as error:
            raise InferenceTimeoutError(f"{model}: deadline exceeded") from error
        if isinstance(result, RequestError):
            raise InvalidInferenceInputError(f"{model}: {result}")
        return InferenceResult(outputs=result, model_version=info.versions[-1])

    async def server_ready(self) -> bool:
        return True

    async def model_ready(self, model: str) -> bool:
        return model in self._models

    async def model_info(self, model: str) -> ModelInfo:
        return self._get(model)[1]

    async def close(self) -> None:
        self._models.clear()
