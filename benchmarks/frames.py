"""Camera-like frames for the WebSocket scenario: the shared photos as the page would send them.

The page (``api/inference/static/app.js``) captures 640 × 480 frames from the camera and sends each
as a JPEG of quality 0.85. Each photo is turned into such a frame once, before any load: oriented by
its EXIF tag, cropped to 4:3 around its centre and scaled to 640 × 480 (``ImageOps.fit``), then
encoded as a JPEG of quality 85.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final

from PIL import Image, ImageOps

from benchmarks.payloads import FilePart

FRAME_SIZE: Final = (640, 480)
JPEG_QUALITY: Final = 85


def camera_frame(data: bytes, size: tuple[int, int] = FRAME_SIZE) -> bytes:
    """One image as a ``size`` JPEG frame (cropped to the frame's aspect ratio, then scaled)."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    framed = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    framed.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def camera_frames(files: Sequence[FilePart], size: tuple[int, int] = FRAME_SIZE) -> list[bytes]:
    """Every file as a camera frame, in order."""
    if not files:
        raise ValueError("no images to make camera frames from")
    return [camera_frame(part.content, size) for part in files]
