"""A Python-based Triton backend named ``onnxruntime``.

The ``nvidia-pytriton`` wheel's tritonserver has no native ONNX Runtime backend. Placed at
``<backend-directory>/onnxruntime/model.py``, this file serves every model whose config says
``backend: "onnxruntime"`` through Triton's Python backend, so the same committed
``config.pbtxt`` runs here and, with the native backend, on NVIDIA's GPU image.

Each ``execute()`` call runs all its requests as one ONNX Runtime call and returns exactly one
response per request; a request with bad inputs gets its own error response.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils

from serving.ort_runtime import OrtModel, RequestError, provider_names


class TritonPythonModel:
    """Triton's Python backend entry point for one model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        config: dict[str, Any] = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        model_path = Path(args["model_repository"]) / args["model_version"] / filename
        kind = args.get("model_instance_kind", "CPU")
        device_id = int(args.get("model_instance_device_id", "0") or 0)
        self.model = OrtModel.from_triton_config(model_path, config, kind, device_id)
        wanted = provider_names(self.model.requested_providers)
        active = self.model.active_providers
        logger = pb_utils.Logger
        logger.log_info(
            f"onnxruntime backend: model {config['name']} v{args['model_version']} "
            f"instance {args.get('model_instance_name', '?')} kind {kind}: "
            f"requested providers {wanted}, active {active}"
        )
        if kind.upper().endswith("GPU") and active == ["CPUExecutionProvider"]:
            logger.log_warn(
                f"onnxruntime backend: {config['name']} asked for a GPU instance but ONNX Runtime "
                "has no CUDA/TensorRT provider here; running on CPU"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds = [self._inputs_of(request) for request in requests]
        responses = []
        for result in self.model.run_requests(feeds):
            if isinstance(result, RequestError):
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(str(result), pb_utils.TritonError.INVALID_ARG),
                    )
                )
            else:
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[
                            pb_utils.Tensor(name, value) for name, value in result.items()
                        ]
                    )
                )
        return responses

    def _inputs_of(self, request: Any) -> dict[str, Any]:
        arrays = {}
        for spec in self.model.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
            if tensor is not None:
                arrays[spec.name] = tensor.as_numpy()
        return arrays

    def finalize(self) -> None:
        self.model = None  # type: ignore[assignment]
