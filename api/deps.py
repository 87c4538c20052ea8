"""FastAPI dependencies, as ``Annotated`` aliases the routes declare.

They are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in its thread pool,
which costs more than the lookup itself on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.config import Settings
from api.services import Services


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
