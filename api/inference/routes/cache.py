"""The prediction cache's admin endpoint: ``DELETE /cache`` (the book's, behind admin rights)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.accounts.auth import AdminPrincipal
from api.deps import ServicesDep
from api.platform.responses import error_responses

router = APIRouter(tags=["cache"])


@router.delete(
    "/cache",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        401,
        (403, "Not an admin, or an API key without the admin scope (or no CSRF header)"),
        (503, "The cache backend (Redis) is unreachable: nothing was cleared"),
    ),
)
async def clear_cache(admin: AdminPrincipal, services: ServicesDep) -> None:
    """Remove every cached prediction (with Redis: for every worker; in memory: this worker's)."""
    await services.cache.clear()
