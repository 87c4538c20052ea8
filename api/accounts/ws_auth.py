"""Authenticating a WebSocket handshake (browsers cannot set headers on WebSockets), and
re-checking the credential while the stream lives.

Accepted, in this order: ``?token=<access token>``, an API key (``X-API-Key`` header or
``?api_key=``), or the login cookie (``__Host-token`` over ``wss``). A cookie-authenticated
handshake must also come from an allowed origin (the page's own host or
``TRITONGATE_CORS_ORIGINS``), so another site cannot open a stream with the user's cookie.
Failures are decided before ``accept()``, and before the stream takes any place (the route then
closes with 1008, policy violation).

:func:`authenticate_websocket` returns the :class:`StreamCredential` the stream was opened with;
:func:`credential_is_valid` runs the same lookup again (the stream does it periodically), so a
token that expired or was revoked, a deleted API key or a deactivated user ends the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from fastapi import WebSocket
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts import security
from api.accounts.auth import API_KEY_HEADER, read_session_cookie
from api.accounts.crud import api_keys as api_keys_crud
from api.accounts.crud import tokens as tokens_crud
from api.accounts.csrf import is_same_origin
from api.config import Settings
from api.db.engine import Database
from api.db.types import utcnow

CredentialKind = Literal["token", "api_key", "cookie"]


class WebSocketAuthError(Exception):
    """The handshake carries no valid credentials (or a cookie from a foreign origin)."""


@dataclass(frozen=True)
class StreamCredential:
    """What a stream was opened with: its kind, the value (kept to re-run the same lookup),
    the stored hash (what revocation names), the user and, for tokens, their expiry."""

    kind: CredentialKind
    value: str = field(repr=False)
    user_id: int
    expires_at: datetime | None = None  # aware UTC; API keys do not expire

    @property
    def stored_hash(self) -> str:
        return security.hash_secret(self.value)

    def expires_in_s(self) -> float | None:
        """Seconds left before the token expires (``None`` for an API key)."""
        if self.expires_at is None:
            return None
        return (self.expires_at - utcnow()).total_seconds()


def _same_origin(websocket: WebSocket, settings: Settings) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:  # not a browser: no cross-site risk
        return True
    return origin in settings.cors_origins or is_same_origin(origin, websocket)


async def _lookup(session: AsyncSession, kind: CredentialKind, value: str) -> StreamCredential:
    """The credential if it is valid now (unexpired token or existing key, active user)."""
    if kind == "api_key":
        user = await api_keys_crud.get_user_by_api_key(session, value)
        if user is None:
            raise WebSocketAuthError("invalid API key")
        return StreamCredential(kind, value, user.id)
    token = await tokens_crud.get_valid_token(session, value)
    if token is None:
        what = "session cookie" if kind == "cookie" else "token"
        raise WebSocketAuthError(f"invalid, expired or revoked {what}")
    return StreamCredential(kind, value, token.user_id, token.expires_at)


async def authenticate_websocket(websocket: WebSocket, settings: Settings) -> StreamCredential:
    """The handshake's valid credential, else :class:`WebSocketAuthError` (the database's own
    errors propagate: the caller tells an outage from a bug)."""
    database: Database = websocket.app.state.database
    token = websocket.query_params.get("token")
    api_key = websocket.headers.get(API_KEY_HEADER) or websocket.query_params.get("api_key")
    cookie = read_session_cookie(websocket)  # `__Host-token` over wss, `token` over ws
    if not (token or api_key or cookie):
        raise WebSocketAuthError("not authenticated")
    if not token and not api_key and not _same_origin(websocket, settings):
        raise WebSocketAuthError("cookie sent from a foreign origin")
    async with database.sessions() as session:
        if token:
            return await _lookup(session, "token", token)
        if api_key:
            return await _lookup(session, "api_key", api_key)
        assert cookie
        return await _lookup(session, "cookie", cookie)


async def credential_is_valid(database: Database, credential: StreamCredential) -> bool:
    """Whether ``credential`` still authenticates the same user (the handshake's lookup again).
    Raises what the database raises (the stream keeps going and tries again later)."""
    async with database.sessions() as session:
        try:
            found = await _lookup(session, credential.kind, credential.value)
        except WebSocketAuthError:
            return False
    return found.user_id == credential.user_id
