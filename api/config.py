"""API settings: read once from the environment (``TRITONGATE_*``, and ``.env``) and passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serving.settings import ServingSettings


class Settings(ServingSettings):
    """Everything the API process needs; see the README's configuration table."""

    # Inference: a running Triton (gRPC "host:port"); unset means `tritongate serve` starts a
    # local one. "onnxruntime" runs the repository in-process instead (no Triton binary needed).
    triton_url: str | None = None
    inference_backend: Literal["triton", "onnxruntime"] = "triton"

    # Front-end micro-batching, per model and worker process.
    batching_enabled: bool = True
    batch_max_delay_us: int = Field(default=2000, ge=0)
    batch_max_in_flight: int = Field(default=2, ge=1)
    queue_size: int = Field(default=512, ge=1)
    request_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: int = Field(default=1, ge=1)
    model_refresh_interval_s: float = Field(default=5.0, gt=0)

    # Request limits.
    max_text_chars: int = Field(default=100_000, ge=1)
    max_batch_texts: int = Field(default=64, ge=1)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    detection_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    preprocess_threads: int = Field(default=2, ge=1)

    # `tritongate serve`.
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
