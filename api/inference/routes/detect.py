"""Object detection on one uploaded image: the book's ``POST /object-detection`` (cached, per
tenant: see ``api/inference/tenancy.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile

from api.deps import ServicesDep
from api.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from api.inference.cache import image_key_off_loop
from api.inference.disconnect import unless_disconnected
from api.inference.schemas import DetectedObject, DetectionOutput
from api.inference.tenancy import TenantDep
from api.platform.responses import SERVICE_ERRORS, error_responses
from serving.specs import YOLOS

router = APIRouter(tags=["object detection"])

ACCEPTED_CONTENT_TYPES = {"image/jpeg", "image/png", "image/webp", "application/octet-stream"}
MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers around the file


@router.post(
    "/object-detection",
    response_model=DetectionOutput,
    responses={
        200: {"description": "`X-Cache: hit` when served from the prediction cache"},
        **error_responses(
            (400, "A multipart body that cannot be parsed"),
            (408, "Request body not received within TRITONGATE_BODY_TIMEOUT_S"),
            (413, "Upload or image dimensions over the configured limit"),
            (415, "Not a JPEG, PNG or WebP image"),
            (422, "Corrupt or truncated image, or a bad threshold"),
            *SERVICE_ERRORS,
        ),
    },
)
async def object_detection(
    services: ServicesDep,
    request: Request,
    tenant: TenantDep,
    image: Annotated[UploadFile, File(description="A JPEG, PNG or WebP image.")],
    threshold: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, description="Minimum score; default 0.7 (configurable)."),
    ] = None,
) -> Response:
    """Detect objects; boxes are in the uploaded image's pixels."""
    limit = services.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLargeError(f"upload of {declared} bytes; the limit is {limit}")
    # The part's declared type (parameters and case ignored) must be an accepted image type or
    # unknown; the format itself is then read from the bytes, whatever the label says.
    media_type = (image.content_type or "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            f"content type {image.content_type!r}; send image/jpeg, image/png or image/webp"
        )
    data = await image.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"image over {limit} bytes")
    chosen = services.settings.detection_threshold if threshold is None else threshold

    async def detect() -> tuple[DetectionOutput, str]:
        result = await unless_disconnected(request, services.detector.detect(data, chosen))
        output = DetectionOutput(
            objects=[
                DetectedObject(box=obj.box, label=obj.label, score=obj.score)
                for obj in result.objects
            ],
            image_size=result.image_size,
            model_version=result.model_version,
        )
        return output, result.model_version

    key = (
        await image_key_off_loop(YOLOS.name, data, chosen, services.executor, tenant)
        if services.cache.enabled
        else None
    )
    return await services.cache.respond(key, detect)
