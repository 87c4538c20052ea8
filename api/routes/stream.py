"""Streaming detection: the book's WebSocket at ``/object-detection`` (also ``/ws/detect``)."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.streaming import CLOSE_POLICY_VIOLATION, DetectionStream
from api.ws_auth import WebSocketAuthError, authenticate_websocket

router = APIRouter(tags=["object detection"])


async def detection_stream(websocket: WebSocket) -> None:
    """Binary image frames in, one JSON result per processed frame out (see api/streaming.py)."""
    services = websocket.app.state.services
    settings = services.settings
    if settings.inference_auth == "required":
        try:
            await authenticate_websocket(websocket, settings)
        except WebSocketAuthError as error:
            await websocket.close(CLOSE_POLICY_VIOLATION, str(error))
            return
    await websocket.accept()
    stream = DetectionStream(
        websocket,
        services.detector,
        threshold=settings.detection_threshold,
        max_frame_bytes=settings.max_upload_bytes,
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
