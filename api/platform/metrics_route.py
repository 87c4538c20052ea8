"""``GET /metrics``: Prometheus text exposition, behind a bearer secret or for local scrapers.

* With ``TRITONGATE_METRICS_TOKEN`` set: ``Authorization: Bearer <token>`` is required (401).
* Without it: only loopback clients are answered (127.0.0.0/8, ::1), anyone else gets 403, so
  the API port does not publish its metrics to the network by default. The client address is
  uvicorn's: behind a reverse proxy on the same host it is the proxy's, unless the proxy sends
  ``X-Forwarded-For`` (uvicorn trusts it from 127.0.0.1): such a proxy must send it, or not
  forward ``/metrics``. Remote scrapers use the token or ``TRITONGATE_METRICS_PORT``.

Left out of the OpenAPI schema: it is for the scraper, not part of the API's contract.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from api.deps import MetricsDep, SettingsDep
from api.errors import NotAuthenticatedError, PermissionDeniedError
from api.platform.metrics import CONTENT_TYPE

router = APIRouter(tags=["observability"])

BEARER = "bearer "


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a client address) is this machine's loopback (IPv4-mapped too)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def check_metrics_token(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """With ``TRITONGATE_METRICS_TOKEN`` set, ``Authorization: Bearer <token>`` is required;
    without it, the client must be on the loopback interface."""
    expected = settings.metrics_token_value
    if expected is None:
        if not is_loopback(request.client.host if request.client else None):
            raise PermissionDeniedError(
                "/metrics answers local clients only; remote scrapers need "
                "TRITONGATE_METRICS_TOKEN (or TRITONGATE_METRICS_PORT)"
            )
        return
    if authorization is None or not authorization[: len(BEARER)].lower() == BEARER:
        raise NotAuthenticatedError("The metrics token is missing")
    if not hmac.compare_digest(authorization[len(BEARER) :].strip().encode(), expected.encode()):
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
