"""Request and response bodies, one module per area.

The inference schemas stay importable from ``api.schemas`` (``from api.schemas import
PredictionInput``); the user, auth and blog schemas live in their own modules.
"""

from api.schemas.inference import (
    NEWSGROUPS_EXAMPLE_PROBABILITIES,
    BatchPredictionInput,
    BatchPredictionOutput,
    DetectedObject,
    DetectionOutput,
    Liveness,
    ModelDescription,
    ModelList,
    PredictionInput,
    PredictionOutput,
    Readiness,
    TensorInfo,
)

__all__ = [
    "NEWSGROUPS_EXAMPLE_PROBABILITIES",
    "BatchPredictionInput",
    "BatchPredictionOutput",
    "DetectedObject",
    "DetectionOutput",
    "Liveness",
    "ModelDescription",
    "ModelList",
    "PredictionInput",
    "PredictionOutput",
    "Readiness",
    "TensorInfo",
]
