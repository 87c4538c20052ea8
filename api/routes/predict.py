"""Text classification: the book's ``POST /prediction`` and a batch variant."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ServicesDep
from api.disconnect import unless_disconnected
from api.errors import UnprocessableInputError
from api.schemas import (
    BatchPredictionInput,
    BatchPredictionOutput,
    PredictionInput,
    PredictionOutput,
)
from api.services import Services
from serving.text import Classification

router = APIRouter(tags=["text classification"])

SERVICE_ERRORS = {
    422: {"description": "Empty or oversized text"},
    503: {"description": "Overloaded or Triton unavailable; see Retry-After"},
    504: {"description": "No result within the request deadline"},
}


def _check_lengths(services: Services, texts: list[str]) -> None:
    limit = services.settings.max_text_chars
    for index, text in enumerate(texts):
        if len(text) > limit:
            where = "text" if len(texts) == 1 else f"texts[{index}]"
            raise UnprocessableInputError(
                f"{where} has {len(text)} characters; the limit is {limit}"
            )


def _output(result: Classification) -> PredictionOutput:
    return PredictionOutput(
        category=result.category,
        probabilities=result.probabilities,
        model_version=result.model_version,
    )


@router.post("/prediction", responses=SERVICE_ERRORS)
async def prediction(
    body: PredictionInput, services: ServicesDep, request: Request
) -> PredictionOutput:
    """Classify one document into one of the four newsgroups."""
    _check_lengths(services, [body.text])
    (result,) = await unless_disconnected(request, services.classifier.classify([body.text]))
    return _output(result)


@router.post("/prediction/batch", responses=SERVICE_ERRORS)
async def prediction_batch(
    body: BatchPredictionInput, services: ServicesDep, request: Request
) -> BatchPredictionOutput:
    """Classify several documents; one result per text, in order."""
    limit = services.settings.max_batch_texts
    if len(body.texts) > limit:
        raise UnprocessableInputError(f"{len(body.texts)} texts; at most {limit} per request")
    _check_lengths(services, body.texts)
    results = await unless_disconnected(request, services.classifier.classify(body.texts))
    return BatchPredictionOutput(predictions=[_output(result) for result in results])
