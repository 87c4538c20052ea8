"""Text classification: the book's ``POST /prediction`` and a batch variant (both cached, per
tenant: see ``api/inference/tenancy.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import ServicesDep
from api.errors import UnprocessableInputError
from api.inference.cache import text_key, texts_key
from api.inference.disconnect import unless_disconnected
from api.inference.schemas import (
    BatchPredictionInput,
    BatchPredictionOutput,
    PredictionInput,
    PredictionOutput,
)
from api.inference.services import Services
from api.inference.tenancy import TenantDep
from api.platform.responses import SERVICE_ERRORS, error_responses
from serving.specs import NEWSGROUPS
from serving.text import Classification

router = APIRouter(tags=["text classification"])

ERRORS = error_responses(
    400,
    (408, "Request body not received within TRITONGATE_BODY_TIMEOUT_S"),
    (413, "Request body over TRITONGATE_MAX_BODY_BYTES"),
    (422, "Empty or oversized text"),
    *SERVICE_ERRORS,
)
CACHED = {200: {"description": "`X-Cache: hit` when served from the prediction cache"}}


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


@router.post("/prediction", response_model=PredictionOutput, responses={**CACHED, **ERRORS})
async def prediction(
    body: PredictionInput, services: ServicesDep, request: Request, tenant: TenantDep
) -> Response:
    """Classify one document into one of the four newsgroups."""
    _check_lengths(services, [body.text])

    async def classify() -> tuple[PredictionOutput, str]:
        (result,) = await unless_disconnected(request, services.classifier.classify([body.text]))
        return _output(result), result.model_version

    return await services.cache.respond(text_key(NEWSGROUPS.name, body.text, tenant), classify)


@router.post(
    "/prediction/batch",
    response_model=BatchPredictionOutput,
    responses={**CACHED, **ERRORS},
)
async def prediction_batch(
    body: BatchPredictionInput, services: ServicesDep, request: Request, tenant: TenantDep
) -> Response:
    """Classify several documents; one result per text, in order."""
    limit = services.settings.max_batch_texts
    if len(body.texts) > limit:
        raise UnprocessableInputError(f"{len(body.texts)} texts; at most {limit} per request")
    _check_lengths(services, body.texts)

    async def classify() -> tuple[BatchPredictionOutput, str]:
        results = await unless_disconnected(request, services.classifier.classify(body.texts))
        output = BatchPredictionOutput(predictions=[_output(result) for result in results])
        return output, results[0].model_version

    key = texts_key(NEWSGROUPS.name, body.texts, tenant)
    return await services.cache.respond(key, classify)
