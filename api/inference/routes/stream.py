"""Streaming detection: the book's WebSocket at ``/object-detection`` (also ``/ws/detect``)."""

from __future__ import annotations

import contextlib
import functools
import logging

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.accounts.login_limits import client_ip, ip_bucket
from api.accounts.ws_auth import (
    StreamCredential,
    WebSocketAuthError,
    authenticate_websocket,
    credential_is_valid,
)
from api.config import Settings
from api.db.engine import Database, is_unavailable
from api.inference.services import Services
from api.inference.streaming import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    DetectionStream,
    Revalidation,
    StreamLimits,
    StreamOwner,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["object detection"])


async def detection_stream(websocket: WebSocket) -> None:
    """Binary image frames in, one JSON result per processed frame out (see
    api/inference/streaming.py).

    In this order, all before ``accept()``: the credentials (with ``inference_auth=required``;
    none: close 1008, so an anonymous client takes no place), then at most
    ``stream_max_per_user`` streams per user (per client address when inference is open), then
    at most ``stream_max_connections`` per worker, handshakes included. Over either cap the
    handshake is refused with HTTP 503 and ``Retry-After`` naming the cap (a close with 1013
    on a server without the denial-response extension); a database that cannot be reached
    while credentials are checked is refused the same way.
    """
    services: Services = websocket.app.state.services
    settings = services.settings
    credential: StreamCredential | None = None
    if settings.inference_auth == "required":
        try:
            credential = await authenticate_websocket(websocket, settings)
        except WebSocketAuthError as error:
            await websocket.close(CLOSE_POLICY_VIOLATION, str(error))
            return
        except Exception as error:
            if not is_unavailable(error):
                raise
            logger.warning("database unavailable during a stream handshake: %r", error)
            await _refuse(websocket, settings, "the database is unavailable, retry shortly")
            return
        owner = StreamOwner(
            f"user:{credential.user_id}", credential.user_id, credential.stored_hash
        )
    else:
        owner = StreamOwner(f"address:{ip_bucket(client_ip(websocket))}")
    refused = services.streams.try_admit(
        owner.key, settings.stream_max_per_user, settings.stream_max_connections
    )
    if refused == "user":
        who = "user" if credential is not None else "client address"
        detail = (
            f"too many detection streams for this {who} ({settings.stream_max_per_user} per "
            f"{who} per worker); close one or retry later"
        )
        await _refuse(websocket, settings, detail)
        return
    if refused == "worker":
        detail = f"too many detection streams ({settings.stream_max_connections} per worker)"
        await _refuse(websocket, settings, f"{detail}; retry later")
        return
    try:
        await _serve(websocket, services, owner, credential)
    finally:
        services.streams.release(owner.key)


async def _refuse(websocket: WebSocket, settings: Settings, detail: str) -> None:
    """Refuse the handshake for now: HTTP 503 with ``Retry-After``, or close with 1013."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        headers = {"Retry-After": str(settings.retry_after_s)}
        response = JSONResponse({"detail": detail}, status_code=503, headers=headers)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(CLOSE_TRY_AGAIN_LATER, detail)


def _revalidation(
    websocket: WebSocket, settings: Settings, credential: StreamCredential | None
) -> Revalidation | None:
    if credential is None:
        return None
    database: Database = websocket.app.state.database
    return Revalidation(
        check=functools.partial(credential_is_valid, database, credential),
        period_s=settings.stream_revalidate_s,
        expires_in_s=credential.expires_in_s(),
    )


async def _serve(
    websocket: WebSocket,
    services: Services,
    owner: StreamOwner,
    credential: StreamCredential | None,
) -> None:
    settings = services.settings
    stream = DetectionStream(
        websocket,
        services.detector,
        threshold=settings.detection_threshold,
        limits=StreamLimits(
            max_frame_bytes=settings.max_upload_bytes,
            max_frames_per_s=settings.stream_max_frames_per_s,
            frame_burst=settings.stream_frame_burst,
            idle_timeout_s=settings.stream_idle_timeout_s,
        ),
        observer=services.stream_observer,
        revalidation=_revalidation(websocket, settings, credential),
    )
    # Tracked from before accept(): a logout during the handshake still ends this stream.
    with services.streams.track(stream, owner):
        await websocket.accept()
        services.stream_observer.opened()
        try:
            await stream.run()
        finally:
            services.stream_observer.closed()
    # Close our side unless the client already left (closing then would raise).
    connected = WebSocketState.CONNECTED
    if websocket.application_state == connected and websocket.client_state == connected:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close()


router.add_api_websocket_route("/object-detection", detection_stream)
router.add_api_websocket_route("/ws/detect", detection_stream)
