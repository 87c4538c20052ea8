"""Streaming detection: the book's WebSocket at ``/object-detection`` (also ``/ws/detect``)."""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.config import Settings
from api.db import is_unavailable
from api.services import Services
from api.streaming import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    DetectionStream,
    StreamLimits,
)
from api.ws_auth import WebSocketAuthError, authenticate_websocket

logger = logging.getLogger(__name__)

router = APIRouter(tags=["object detection"])


async def detection_stream(websocket: WebSocket) -> None:
    """Binary image frames in, one JSON result per processed frame out (see api/streaming.py).

    At most ``stream_max_connections`` streams per worker, handshakes included: one more is
    refused before ``accept()`` (and before any credential is checked) with HTTP 503 and
    ``Retry-After``, or a close with 1013 on a server without the denial-response extension.
    A database that cannot be reached while credentials are checked is refused the same way.
    """
    services: Services = websocket.app.state.services
    settings = services.settings
    if not services.streams.try_admit(settings.stream_max_connections):
        detail = f"too many detection streams ({settings.stream_max_connections} per worker)"
        await _refuse(websocket, settings, f"{detail}; retry later")
        return
    try:
        await _serve(websocket, services)
    finally:
        services.streams.release()


async def _refuse(websocket: WebSocket, settings: Settings, detail: str) -> None:
    """Refuse the handshake for now: HTTP 503 with ``Retry-After``, or close with 1013."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        headers = {"Retry-After": str(settings.retry_after_s)}
        response = JSONResponse({"detail": detail}, status_code=503, headers=headers)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(CLOSE_TRY_AGAIN_LATER, detail)


async def _serve(websocket: WebSocket, services: Services) -> None:
    settings = services.settings
    if settings.inference_auth == "required":
        try:
            await authenticate_websocket(websocket, settings)
        except WebSocketAuthError as error:
            await websocket.close(CLOSE_POLICY_VIOLATION, str(error))
            return
        except Exception as error:
            if not is_unavailable(error):
                raise
            logger.warning("database unavailable during a stream handshake: %r", error)
            await _refuse(websocket, settings, "the database is unavailable, retry shortly")
            return
    await websocket.accept()
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
    )
    services.stream_observer.opened()
    try:
        with services.streams.track(websocket):
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
