"""Request and response bodies of the inference API (with the examples shown in /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

NEWSGROUPS_EXAMPLE_PROBABILITIES = {
    "comp.sys.mac.hardware": 0.71,
    "sci.crypt": 0.12,
    "soc.religion.christian": 0.1,
    "talk.religion.misc": 0.07,
}


def _check_text(value: str, where: str) -> None:
    """Not blank, and encodable as UTF-8: JSON escapes can carry lone surrogates
    (``"\\ud800"``), which no model input can hold. Control characters and NUL are text."""
    if not value.strip():
        raise ValueError(f"{where} must not be empty or only whitespace")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(value[error.start])
        raise ValueError(
            f"{where} is not valid Unicode: a lone surrogate U+{code:04X} at character "
            f"{error.start}"
        ) from None


def _not_blank(value: str) -> str:
    _check_text(value, "text")
    return value


class PredictionInput(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "computer cpu memory ram"}]})

    text: str = Field(min_length=1, description="The document to classify (raw text).")

    _check = field_validator("text")(_not_blank)


class PredictionOutput(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "category": "comp.sys.mac.hardware",
                    "probabilities": NEWSGROUPS_EXAMPLE_PROBABILITIES,
                    "model_version": "1",
                }
            ]
        }
    )

    category: str = Field(description="The most probable category (the book's field).")
    probabilities: dict[str, float] = Field(description="Probability of every category.")
    model_version: str


class BatchPredictionInput(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"texts": ["computer cpu memory ram", "the clipper chip and key escrow"]}]
        }
    )

    texts: list[str] = Field(min_length=1, description="Documents to classify, in order.")

    @field_validator("texts")
    @classmethod
    def _texts_not_blank(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            _check_text(value, f"texts[{index}]")
        return values


class BatchPredictionOutput(BaseModel):
    predictions: list[PredictionOutput]


class DetectedObject(BaseModel):
    box: tuple[float, float, float, float] = Field(
        description="x1, y1, x2, y2 in pixels of the uploaded image."
    )
    label: str
    score: float


class DetectionOutput(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "objects": [
                        {"box": [40.2, 72.9, 175.6, 371.4], "label": "cat", "score": 0.98},
                        {"box": [333.2, 72.6, 638.9, 373.5], "label": "cat", "score": 0.96},
                    ],
                    "image_size": [640, 480],
                    "model_version": "1",
                }
            ]
        }
    )

    objects: list[DetectedObject]
    image_size: tuple[int, int] = Field(description="Width and height of the uploaded image.")
    model_version: str


class TensorInfo(BaseModel):
    name: str
    data_type: str
    dims: list[int]


class ModelDescription(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "yolos",
                    "versions": ["1"],
                    "ready": True,
                    "state": "READY",
                    "max_batch_size": 8,
                    "inputs": [
                        {"name": "pixels", "data_type": "TYPE_UINT8", "dims": [480, 640, 3]},
                        {"name": "content_size", "data_type": "TYPE_INT32", "dims": [2]},
                    ],
                    "outputs": [
                        {"name": "logits", "data_type": "TYPE_FP32", "dims": [100, 92]},
                        {"name": "pred_boxes", "data_type": "TYPE_FP32", "dims": [100, 4]},
                    ],
                    "labels": ["N/A", "person", "bicycle", "..."],
                    "random_weights": True,
                    "provenance": {
                        "weights": {"source": "random-init", "seed": 0},
                        "random_weights": True,
                        "exported_at": "2026-01-05T10:12:03+00:00",
                    },
                    "error": None,
                }
            ]
        }
    )

    name: str
    versions: list[str]
    ready: bool
    state: str = Field(description="READY, or UNAVAILABLE with the reason in `error`.")
    max_batch_size: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    labels: list[str]
    random_weights: bool = Field(description="True when the weights are random (no real model).")
    provenance: dict[str, Any] | None = Field(
        description=(
            "Where the weights came from (public view): `weights` (source, hub_id, revision, "
            "seed, architecture), `dataset` (name, categories, document counts), "
            "`metrics.accuracy`, `random_weights`, `note` and `exported_at`, when known. Host "
            "paths and library versions are not shown."
        )
    )
    error: str | None = None


class ModelList(BaseModel):
    models: list[ModelDescription]


class Liveness(BaseModel):
    status: str = "alive"


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ready": True, "server": True, "models": {"newsgroups": True, "yolos": True}}
            ]
        }
    )

    ready: bool
    server: bool
    models: dict[str, bool]
    reasons: list[str] = Field(default_factory=list)
