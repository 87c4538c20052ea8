"""Authenticating a WebSocket handshake (browsers cannot set headers on WebSockets).

Accepted, in this order: ``?token=<access token>``, an API key (``X-API-Key`` header or
``?api_key=``), or the login cookie. A cookie-authenticated handshake must also come from an
allowed origin (the page's own host or ``TRITONGATE_CORS_ORIGINS``), so another site cannot open a
stream with the user's cookie. Failures are decided before ``accept()``; the route then closes
with 1008 (policy violation).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import WebSocket

from api.auth import API_KEY_HEADER, TOKEN_COOKIE
from api.config import Settings
from api.crud import api_keys as api_keys_crud
from api.crud import tokens as tokens_crud
from api.db import Database
from api.models import User


class WebSocketAuthError(Exception):
    """The handshake carries no valid credentials (or a cookie from a foreign origin)."""


def _same_origin(websocket: WebSocket, settings: Settings) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:  # not a browser: no cross-site risk
        return True
    if origin in settings.cors_origins:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


async def authenticate_websocket(websocket: WebSocket, settings: Settings) -> User:
    database: Database = websocket.app.state.database
    token = websocket.query_params.get("token")
    api_key = websocket.headers.get(API_KEY_HEADER) or websocket.query_params.get("api_key")
    cookie = websocket.cookies.get(TOKEN_COOKIE)
    async with database.sessions() as session:
        if token:
            found = await tokens_crud.get_valid_token(session, token)
            if found is None:
                raise WebSocketAuthError("invalid, expired or revoked token")
            return found.user
        if api_key:
            user = await api_keys_crud.get_user_by_api_key(session, api_key)
            if user is None:
                raise WebSocketAuthError("invalid API key")
            return user
        if cookie:
            if not _same_origin(websocket, settings):
                raise WebSocketAuthError("cookie sent from a foreign origin")
            found = await tokens_crud.get_valid_token(session, cookie)
            if found is None:
                raise WebSocketAuthError("invalid, expired or revoked session cookie")
            return found.user
    raise WebSocketAuthError("not authenticated")
