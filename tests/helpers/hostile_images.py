"""Hostile and unusual image files, generated from a photo with Pillow (and, where Pillow cannot
write the file, with a few lines of PNG/TIFF structure): truncated files, decompression bombs,
16-bit PNGs, CMYK JPEGs, animations, EXIF orientations and corrupt EXIF blocks."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112

# How a camera stores an upright picture for EXIF orientation n (EXIF 2.32, 4.6.4): the inverse
# of what a viewer applies to show it upright (6: stored turned 90 degrees counter-clockwise,
# shown after a clockwise turn).
STORED_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of uint16 ``pixels``: [h, w] greyscale, [h, w, 3] RGB or [h, w, 4] RGBA
    (Pillow writes 16-bit greyscale only)."""
    colour_type = {2: 0, 3: 2}[pixels.ndim] if pixels.ndim == 2 else {3: 2, 4: 6}[pixels.shape[2]]
    big_endian = pixels.astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in big_endian)
    return _png(pixels.shape[1], pixels.shape[0], 16, colour_type, zlib.compress(rows))


def png_bomb(width: int, height: int, bit_depth: int = 1) -> bytes:
    """A real decompression bomb: a greyscale PNG of ``width`` x ``height`` black pixels whose
    IDAT holds every row (deflate squeezes ~1000:1). 50000 x 50000 at 1 bit is ~300 KB of file
    for 312 MB of bits, 7.5 GB once converted to RGB."""
    row = b"\x00" * (1 + (width * bit_depth + 7) // 8)
    compressor = zlib.compressobj(9)
    block = row * 256
    parts = [compressor.compress(block) for _ in range(height // 256)]
    parts += [compressor.compress(row * (height % 256)), compressor.flush()]
    return _png(width, height, bit_depth, 0, b"".join(parts))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares ``width`` x ``height`` 8-bit grey pixels
    but whose data holds only the first 16 rows: a decoder that trusts the header allocates the
    whole image before it finds the data truncated."""
    rows = (b"\x00" * (1 + width)) * min(16, height)
    return _png(width, height, 8, 0, zlib.compress(rows, 9))


def png_blank(width: int, height: int) -> bytes:
    """A valid 8-bit RGB PNG of ``width`` x ``height`` black pixels: a few hundred KB of file
    for 3 bytes per pixel once decoded (the largest decode a file under the upload cap buys)."""
    row = b"\x00" * (1 + 3 * width)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    return _png(width, height, 8, 2, b"".join(parts) + compressor.flush())


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims ``width`` x ``height`` (at most 65535 each)."""
    start = data.index(b"\xff\xc0")
    return data[: start + 5] + struct.pack(">HH", height, width) + data[start + 9 :]


def with_orientation(upright: Image.Image, orientation: int, fmt: str = "PNG") -> bytes:
    """``upright`` stored the way a camera would for ``orientation``, with the EXIF tag."""
    stored = upright if orientation == 1 else upright.transpose(STORED_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    options: dict[str, object] = {"quality": 95} if fmt == "JPEG" else {}
    return encode(stored, fmt, exif=exif, **options)


def corrupt_exif(orientation: int = 6) -> bytes:
    """A raw EXIF block (``Exif\\0\\0`` + little-endian TIFF) with the orientation tag and an
    XResolution entry whose type says ASCII where a RATIONAL belongs: Pillow reads it, but
    re-encoding the block (``ImageOps.exif_transpose`` does) raises TypeError."""
    entries = [
        (EXIF_ORIENTATION, 3, 1, struct.pack("<HH", orientation, 0)),  # SHORT
        (0x011A, 2, 4, b"abc\x00"),  # XResolution as ASCII "abc"
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value
    ifd += struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def animated(frames: list[Image.Image], fmt: str) -> bytes:
    """A lossless animation (WEBP, PNG i.e. APNG, or GIF) of ``frames``."""
    options: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
