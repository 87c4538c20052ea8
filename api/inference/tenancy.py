"""Whose request it is, for what must not be shared between users: the prediction cache.

With ``TRITONGATE_INFERENCE_AUTH=required``, :func:`record_tenant` is the inference routers'
guard (in place of ``get_principal``): it authenticates the caller exactly as ``get_principal``
does (same 401/403) and records the user's id as the request's tenant. A route reads it with
:data:`TenantDep` and puts it in its cache key, so one user's entries are never another user's
hits (no ``X-Cache`` or timing oracle across users).

With ``TRITONGATE_INFERENCE_AUTH=open`` there are no tenants: :data:`TenantDep` is ``None`` and
the cache is shared by every caller (documented in the README's "Caching" section). A route that
needs a tenant under ``required`` but was mounted without the guard fails closed (an error, never
a shared entry).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.accounts.auth import CurrentPrincipal
from api.deps import SettingsDep

_STATE_ATTRIBUTE = "tenant"


class TenantGuardMissingError(RuntimeError):
    """A route read the tenant under ``inference_auth=required`` without the tenant guard."""


async def record_tenant(request: Request, principal: CurrentPrincipal) -> str:
    """The guard: the authenticated user's id, recorded as this request's tenant."""
    tenant = str(principal.user.id)
    setattr(request.state, _STATE_ATTRIBUTE, tenant)
    return tenant


async def current_tenant(request: Request, settings: SettingsDep) -> str | None:
    """The request's tenant (``None`` when inference is open to anyone)."""
    if settings.inference_auth != "required":
        return None
    tenant = getattr(request.state, _STATE_ATTRIBUTE, None)
    if not isinstance(tenant, str):
        raise TenantGuardMissingError(
            f"{request.url.path} reads the tenant but is not guarded by record_tenant"
        )
    return tenant


TenantDep = Annotated[str | None, Depends(current_tenant)]
