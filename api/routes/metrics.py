"""``GET /metrics``: Prometheus text exposition, optionally behind a bearer secret.

Left out of the OpenAPI schema: it is for the scraper, not part of the API's contract.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from api.deps import MetricsDep, SettingsDep
from api.errors import NotAuthenticatedError
from api.metrics import CONTENT_TYPE
from api.security import constant_time_equal

router = APIRouter(tags=["observability"])

BEARER = "bearer "


async def check_metrics_token(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """With ``TRITONGATE_METRICS_TOKEN`` set, ``Authorization: Bearer <token>`` is required."""
    expected = settings.metrics_token_value
    if expected is None:
        return
    if authorization is None or not authorization[: len(BEARER)].lower() == BEARER:
        raise NotAuthenticatedError("The metrics token is missing")
    if not constant_time_equal(authorization[len(BEARER) :].strip(), expected):
        raise NotAuthenticatedError("The metrics token is wrong")


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(check_metrics_token)],
    include_in_schema=False,
)
async def metrics(metrics: MetricsDep) -> Response:
    """Request, batching, cache and stream metrics of this process (of every worker under
    gunicorn), in Prometheus text format."""
    body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
