"""Probes: ``/health/live`` (the process answers) and ``/health/ready`` (it can serve)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from api.inference.schemas import Liveness, Readiness

# Liveness alone (an app without inference: `live_router`), or liveness and readiness.
live_router = APIRouter(prefix="/health", tags=["health"])
ready_router = APIRouter(prefix="/health", tags=["health"])


@live_router.get("/live")
async def live() -> Liveness:
    """The process is up and its event loop answers."""
    return Liveness()


@ready_router.get("/ready", responses={503: {"model": Readiness, "description": "Not ready"}})
async def ready(services: ServicesDep) -> Readiness:
    """Triton is reachable and every model is ready; 503 with the reasons otherwise."""
    client = services.client
    server = await client.server_ready()
    models = {name: server and await client.model_ready(name) for name in services.registry.states}
    reasons = []
    if not server:
        reasons.append("the inference server is unreachable or not ready")
    reasons.extend(f"model {name} is not ready" for name, ok in models.items() if server and not ok)
    body = Readiness(ready=not reasons, server=server, models=models, reasons=reasons)
    if reasons:
        return JSONResponse(  # type: ignore[return-value]
            body.model_dump(),
            status_code=503,
            headers={"Retry-After": str(services.settings.retry_after_s)},
        )
    return body
