"""YOLOS pre- and post-processing in numpy and Pillow, used by the API at request time.

The pipeline reproduces transformers' slow ``YolosImageProcessor`` (pinned in pyproject.toml)
configured with ``size={"max_height": 480, "max_width": 640}``, ``do_pad=True`` and
``pad_size={"height": 480, "width": 640}``, and its ``post_process_object_detection``: the export's
parity gate (export/yolos.py) checks both against transformers on real photos. The API's share
of the pre-processing is decoding and resizing: the served graph takes the resized uint8 pixels
and does the processor's rescale, normalisation and zero padding itself
(export/yolos_preprocessing.py), so no float work happens here.

Boxes come out of the model as (cx, cy, w, h) relative to the resized, un-padded image content
(DETR's convention), so scaling them by the original image's width and height maps them back to
original pixels.

The request path (:func:`prepare_image`) decodes no more than the model needs: a JPEG is decoded
with DCT scaling (Pillow's draft mode, 1/2, 1/4 or 1/8) to the smallest size still at least the
resized size, then resized to exactly what full decoding would give (so ``content_size`` and the
boxes' scale are unchanged; the pixels differ slightly from full decoding, as an 8x8 DCT average
differs from a bilinear filter). Every full-size intermediate is released as soon as the next
exists. :func:`decode_image` still decodes at full size (the export's parity gate uses it).

This module must not import torch or transformers.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import ExifTags, Image

from serving.specs import (
    YOLOS_CONTENT_SIZE,
    YOLOS_INPUT_HEIGHT,
    YOLOS_INPUT_WIDTH,
    YOLOS_PIXELS,
)

# Largest accepted image, in pixels (width x height), checked from the header before any pixel is
# decoded. The model sees at most 640x480 (0.3 MP); 26 MP takes every 12 MP phone photo and every
# 24-26 MP camera (6000x4000, Fujifilm's 6240x4160) and refuses 48 MP phone modes, 45 MP+ full
# frame and the 6300x6300 (39.7 MP) PNG a few hundred bytes long. A PNG or WebP at the limit
# still decodes at full size: 26 MB per channel (78 MB as RGB).
MAX_IMAGE_PIXELS: Final = 26_000_000

# What Pillow raises on hostile bytes, besides its own errors (OSError, SyntaxError, ValueError).
_PARSE_ERRORS: Final = (OSError, ValueError, SyntaxError, EOFError, struct.error)

# EXIF orientation → the transpose that shows the image upright (as ImageOps.exif_transpose).
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageDecodeError(ValueError):
    """The uploaded bytes are not a decodable image (or are too large to decode safely)."""


class UnsupportedImageError(ImageDecodeError):
    """Not an image, or not one of the accepted formats."""


class CorruptImageError(ImageDecodeError):
    """An image of an accepted format whose data is corrupt or truncated."""


class ImageTooLargeError(ImageDecodeError):
    """More pixels than the configured limit (decompression-bomb guard)."""


@dataclass(frozen=True)
class Detection:
    """One detected object.

    ``box`` is (x1, y1, x2, y2) in pixels of the original image (not clipped to it, like
    transformers); ``label_id`` indexes the model's labels and ``label`` is its name.
    """

    box: tuple[float, float, float, float]
    label: str
    score: float
    label_id: int


# --- decoding ----------------------------------------------------------------------------------


def decode_image(
    data: bytes,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] | None = None,
) -> Image.Image:
    """Decode uploaded bytes into an upright RGB image, at full size.

    Applies the EXIF orientation (phones store portrait photos sideways plus a rotation tag);
    unreadable EXIF metadata is ignored (the pixels still decode). Of an animated image (WebP,
    APNG) the first frame is used. 16-bit greyscale is scaled to 8 bits, CMYK converted to RGB.
    ``formats`` restricts the accepted Pillow formats (e.g. ``("JPEG", "PNG", "WEBP")``).
    Raises :class:`UnsupportedImageError` for empty, non-image or other-format data,
    :class:`CorruptImageError` for corrupt or truncated data and :class:`ImageTooLargeError`
    for images above ``max_pixels`` (checked from the header, before decoding the pixels).
    """
    image = _open(data, max_pixels, formats)
    with image, _decoding(image):
        image.load()
        transpose = _UPRIGHT.get(_orientation(image))
        rgb = _to_8bit(image).convert("RGB")  # a copy even when already RGB: `image` closes
    return rgb if transpose is None else _released(rgb, rgb.transpose(transpose))


@dataclass(frozen=True)
class ReducedImage:
    """An upright image decoded at no more than the model needs (see :func:`decode_reduced`)."""

    image: Image.Image  # mode "L" or "RGB"; each side at least ``target``'s
    size: tuple[int, int]  # the ORIGINAL upright image's (width, height)
    target: tuple[int, int]  # (width, height) it is resized to for the model


def decode_reduced(
    data: bytes,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] | None = None,
    fit: tuple[int, int] = (YOLOS_INPUT_WIDTH, YOLOS_INPUT_HEIGHT),
) -> ReducedImage:
    """Decode uploaded bytes for a model that takes images resized to ``fit`` (width, height).

    Same checks, errors, orientation and colour handling as :func:`decode_image`, but a JPEG is
    decoded with DCT scaling to the smallest 1/1, 1/2, 1/4 or 1/8 of its size that still covers
    ``target`` (what full decoding would be resized to) in both sides, and an 8-bit greyscale
    image stays greyscale (1 byte per pixel). ``size`` is the original image's upright size;
    each full-size intermediate is closed as soon as the next one exists.
    """
    image = _open(data, max_pixels, formats)
    current = image
    try:
        with _decoding(image):
            width, height = image.size
            if image.format == "JPEG":  # its EXIF is read with the header, before any pixel
                request = resized_size(*_upright_size(image, (width, height)), *fit)
                image.draft(None, request[::-1] if _is_sideways(image) else request)
            image.load()
            size = _upright_size(image, (width, height))
            transpose = _UPRIGHT.get(_orientation(image))
            current = _released(current, _to_8bit(current))
            if transpose is not None:
                current = _released(current, current.transpose(transpose))
    except BaseException:
        current.close()
        image.close()
        raise
    return ReducedImage(current, size, resized_size(*size, *fit))


def _open(data: bytes, max_pixels: int, formats: Sequence[str] | None) -> Image.Image:
    """The image opened (header read, no pixels), refused if empty, unknown or too large."""
    if not data:
        raise UnsupportedImageError("empty image: no bytes were uploaded")
    accepted = ", ".join(formats) if formats else "e.g. JPEG, PNG, WebP, GIF or BMP"
    try:
        image = Image.open(io.BytesIO(data), formats=list(formats) if formats else None)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large to decode safely: {exc}") from exc
    except _PARSE_ERRORS as exc:
        raise UnsupportedImageError(f"not a recognised image (accepted: {accepted})") from exc
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise CorruptImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            f"image too large: {width}x{height} = {width * height} pixels, "
            f"the limit is {max_pixels}"
        )
    return image


@contextlib.contextmanager
def _decoding(image: Image.Image) -> Iterator[None]:
    """Pillow's errors while decoding ``image``'s pixels, as :class:`ImageDecodeError`."""
    try:
        yield
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large to decode safely: {exc}") from exc
    except _PARSE_ERRORS as exc:
        raise CorruptImageError(
            f"corrupt or truncated {image.format or 'image'} data: {exc}"
        ) from exc


def _released(old: Image.Image, new: Image.Image) -> Image.Image:
    """``new``, once ``old`` (if another image) has released its pixels."""
    if new is not old:
        old.close()
    return new


def _is_sideways(image: Image.Image) -> bool:
    """Whether the EXIF orientation turns the stored image by 90 degrees (5 to 8)."""
    return _orientation(image) in (5, 6, 7, 8)


def _upright_size(image: Image.Image, stored: tuple[int, int]) -> tuple[int, int]:
    return (stored[1], stored[0]) if _is_sideways(image) else stored


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8), or 1 when it is absent or unreadable.

    Only the tag is read: ``ImageOps.exif_transpose`` also re-encodes the whole EXIF block, which
    raises on hostile metadata (struct.error, TypeError, ...) although the pixels are fine.
    """
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # any failure of Pillow's EXIF parser: metadata only, ignore it
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_8bit(image: Image.Image) -> Image.Image:
    """``image`` itself if it is 8-bit greyscale or RGB, else its 8-bit version: greyscale for
    16-bit greyscale (PNG, modes ``I;16*`` and ``I``, scaled: Pillow's own ``convert`` clips it
    at 255, which turns almost every such image white), RGB for everything else."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "I" or image.mode.startswith("I;16"):
        pixels = np.asarray(image)
        if pixels.dtype.kind != "u" or pixels.dtype.itemsize != 2:
            pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
        return Image.fromarray((pixels >> 8).astype(np.uint8))
    return image.convert("RGB")


# --- preprocessing -----------------------------------------------------------------------------


def resized_size(
    width: int,
    height: int,
    max_width: int = YOLOS_INPUT_WIDTH,
    max_height: int = YOLOS_INPUT_HEIGHT,
) -> tuple[int, int]:
    """(width, height) an image is resized to before padding: the largest that fits, same aspect.

    Same arithmetic as transformers' ``get_image_size_for_max_height_width`` (truncation, and
    small images are scaled up), except that no side drops below one pixel.
    """
    scale = min(max_height / height, max_width / width)
    return max(1, int(width * scale)), max(1, int(height * scale))


def resized_pixels(image: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image resized to ``size`` (width, height; by default :func:`resized_size` of its own
    size: fit 640x480 keeping its aspect ratio) with Pillow bilinear, as the processor resizes,
    as uint8 [height, width, 3] RGB. An image already of that size is not resampled.

    8-bit greyscale is resized before it is turned into RGB (the same bytes as converting first:
    the conversion copies the grey value into each channel), other modes are converted first.
    """
    target = resized_size(*image.size) if size is None else size
    source = image if image.mode in ("L", "RGB") else image.convert("RGB")
    resized = source if source.size == target else source.resize(target, Image.Resampling.BILINEAR)
    rgb = resized if resized.mode == "RGB" else resized.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def preprocess_batch(images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
    """The YOLOS model inputs for a batch of images, keyed by the spec's input names.

    ``pixels`` uint8 [B, 480, 640, 3]: each image resized by :func:`resized_pixels`, at the top
    left, the rest 0; ``content_size`` int32 [B, 2]: each resized image's (height, width). The
    graph rescales, normalises and zeroes the padding after normalisation, like
    YolosImageProcessor (its uint8 0 padding here is only a placeholder).
    """
    count = len(images)
    pixels = np.zeros((count, YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH, 3), dtype=np.uint8)
    content_size = np.empty((count, 2), dtype=np.int32)
    for index, image in enumerate(images):
        content = resized_pixels(image)
        height, width = content.shape[:2]
        pixels[index, :height, :width] = content
        content_size[index] = (height, width)
    return {YOLOS_PIXELS.name: pixels, YOLOS_CONTENT_SIZE.name: content_size}


def preprocess(image: Image.Image) -> dict[str, np.ndarray]:
    """The YOLOS model inputs for one image, batch dimension 1 (see :func:`preprocess_batch`).

    A 640x480 image (the browser's frames) is used as decoded: no resampling, no padding copy.
    """
    return _model_inputs(resized_pixels(image))


def prepare_image(
    data: bytes,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] | None = None,
) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Uploaded bytes to the YOLOS model inputs (batch dimension 1) and the ORIGINAL upright
    image's (width, height), for :func:`postprocess`: :func:`decode_reduced`, then resized to
    what full decoding would be resized to (same ``content_size``), the decoded image closed as
    soon as it is resized. Raises what :func:`decode_image` raises."""
    reduced = decode_reduced(data, max_pixels=max_pixels, formats=formats)
    try:
        content = resized_pixels(reduced.image, reduced.target)
    finally:
        reduced.image.close()
    return _model_inputs(content), reduced.size


def _model_inputs(content: np.ndarray) -> dict[str, np.ndarray]:
    """``content`` (uint8 [h, w, 3], fitting 640x480) padded into the model's inputs."""
    height, width = content.shape[:2]
    if (height, width) == (YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH):
        pixels = content[None]
    else:
        pixels = np.zeros((1, YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH, 3), dtype=np.uint8)
        pixels[0, :height, :width] = content
    content_size = np.array([[height, width]], dtype=np.int32)
    return {YOLOS_PIXELS.name: pixels, YOLOS_CONTENT_SIZE.name: content_size}


# --- postprocessing ----------------------------------------------------------------------------


def class_scores(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best object class and its probability per query, for logits [..., queries, classes + 1].

    Softmax over all classes including the trailing "no object" class, which is then dropped
    before taking the maximum (as YolosImageProcessor's slow post-processing does). Returns
    (scores float64 [..., queries], label ids int64 [..., queries]); ties pick the lowest id.
    """
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    probabilities = exponentials / exponentials.sum(axis=-1, keepdims=True)
    objects = probabilities[..., :-1]
    label_ids = objects.argmax(axis=-1)
    scores = np.take_along_axis(objects, label_ids[..., None], axis=-1)[..., 0]
    return scores, label_ids.astype(np.int64)


def boxes_to_pixels(pred_boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Convert normalised (cx, cy, w, h) boxes [..., 4] to (x1, y1, x2, y2) pixels, float64."""
    boxes = np.asarray(pred_boxes, dtype=np.float64)
    centre_x, centre_y, box_width, box_height = np.moveaxis(boxes, -1, 0)
    corners = np.stack(
        [
            centre_x - 0.5 * box_width,
            centre_y - 0.5 * box_height,
            centre_x + 0.5 * box_width,
            centre_y + 0.5 * box_height,
        ],
        axis=-1,
    )
    return corners * np.array([width, height, width, height], dtype=np.float64)


def postprocess(
    logits: np.ndarray,
    pred_boxes: np.ndarray,
    image_size: tuple[int, int],
    labels: Sequence[str],
    threshold: float,
) -> list[Detection]:
    """Detections of one image whose score is strictly above ``threshold``, in query order.

    ``logits`` is [queries, classes + 1], ``pred_boxes`` [queries, 4] (normalised cx, cy, w, h)
    and ``image_size`` the ORIGINAL image's (width, height). Equivalent to transformers'
    ``post_process_object_detection(outputs, threshold, target_sizes=[(height, width)])``.
    """
    logits = np.asarray(logits)
    pred_boxes = np.asarray(pred_boxes)
    if logits.ndim != 2 or pred_boxes.shape != (logits.shape[0], 4):
        raise ValueError(
            f"expected logits [queries, classes + 1] and pred_boxes [queries, 4], "
            f"got {logits.shape} and {pred_boxes.shape}"
        )
    if len(labels) != logits.shape[-1] - 1:
        raise ValueError(
            f"{len(labels)} labels for {logits.shape[-1] - 1} classes "
            "(logits carry one extra 'no object' class)"
        )
    scores, label_ids = class_scores(logits)
    width, height = image_size
    boxes = boxes_to_pixels(pred_boxes, width, height)
    return [
        Detection(
            box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            label=labels[label_id],
            score=float(score),
            label_id=int(label_id),
        )
        for score, label_id, box in zip(scores, label_ids, boxes, strict=True)
        if score > threshold
    ]


def postprocess_batch(
    logits: np.ndarray,
    pred_boxes: np.ndarray,
    image_sizes: Sequence[tuple[int, int]],
    labels: Sequence[str],
    threshold: float,
) -> list[list[Detection]]:
    """:func:`postprocess` for a batch: logits [B, queries, classes + 1], pred_boxes [B, queries, 4]
    and one original (width, height) per item."""
    if len(logits) != len(image_sizes) or len(pred_boxes) != len(image_sizes):
        raise ValueError(
            f"batch of {len(logits)} logits and {len(pred_boxes)} boxes "
            f"for {len(image_sizes)} image sizes"
        )
    return [
        postprocess(item_logits, item_boxes, size, labels, threshold)
        for item_logits, item_boxes, size in zip(logits, pred_boxes, image_sizes, strict=True)
    ]
