"""FastAPI dependencies, as ``Annotated`` aliases the routes declare.

They are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in its thread pool,
which costs more than the lookup itself on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.accounts.login_limits import LoginLimiter
from api.config import Settings
from api.inference.services import Services
from api.platform.metrics import Metrics


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_login_limiter(request: Request) -> LoginLimiter:
    return request.app.state.login_limiter


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LoginLimiterDep = Annotated[LoginLimiter, Depends(get_login_limiter)]
