"""The request's tenant (api/inference/tenancy.py): the guard records the authenticated user,
routes read it, and nothing is shared by mistake."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.requests import Request

from api.accounts.auth import Principal
from api.config import Settings
from api.inference.tenancy import TenantGuardMissingError, current_tenant, record_tenant


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/prediction", "headers": []})


def _settings(inference_auth: str) -> Settings:
    return Settings(_env_file=None, inference_auth=inference_auth)  # type: ignore[call-arg]


def _principal(user_id: int) -> Principal:
    return Principal(cast(Any, SimpleNamespace(id=user_id, is_admin=False)), "bearer")


def test_the_guard_records_the_authenticated_user_as_the_tenant() -> None:
    request = _request()
    assert asyncio.run(record_tenant(request, _principal(42))) == "42"
    assert asyncio.run(current_tenant(request, _settings("required"))) == "42"


def test_open_inference_has_no_tenants() -> None:
    request = _request()
    asyncio.run(record_tenant(request, _principal(42)))
    assert asyncio.run(current_tenant(request, _settings("open"))) is None


def test_a_route_without_the_guard_fails_closed_rather_than_sharing() -> None:
    with pytest.raises(TenantGuardMissingError):
        asyncio.run(current_tenant(_request(), _settings("required")))
