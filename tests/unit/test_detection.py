"""serving.detection: YOLOS decoding, preprocessing and postprocessing, without torch."""

from __future__ import annotations

import io
import math
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.detection import (
    MAX_IMAGE_PIXELS,
    CorruptImageError,
    Detection,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageError,
    boxes_to_pixels,
    class_scores,
    decode_image,
    decode_reduced,
    postprocess,
    postprocess_batch,
    prepare_image,
    preprocess,
    preprocess_batch,
    resized_pixels,
    resized_size,
)
from serving.detector import ACCEPTED_FORMATS
from serving.specs import YOLOS
from tests.helpers.hostile_images import (
    animated,
    corrupt_exif,
    jpeg_with_size,
    png16,
    png_bomb,
    png_claiming,
    with_orientation,
)
from tests.helpers.memory import MIB, peak_rss_growth

LABELS = [f"class-{index}" for index in range(91)]
EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# --- decode_image ------------------------------------------------------------------------------


def test_decode_returns_rgb_with_the_original_pixels() -> None:
    original = Image.new("RGB", (30, 20), (10, 200, 30))
    decoded = decode_image(encode(original))
    assert decoded.mode == "RGB"
    assert decoded.size == (30, 20)
    assert decoded.getpixel((5, 5)) == (10, 200, 30)


@pytest.mark.parametrize(
    ("mode", "colour"),
    [("L", 128), ("RGBA", (255, 0, 0, 255)), ("P", 3), ("LA", (90, 255))],
)
def test_decode_converts_other_modes_to_rgb(mode: str, colour: object) -> None:
    decoded = decode_image(encode(Image.new(mode, (8, 6), colour)))  # type: ignore[arg-type]
    assert decoded.mode == "RGB"
    assert decoded.size == (8, 6)


def test_decode_keeps_grey_values() -> None:
    decoded = decode_image(encode(Image.new("L", (4, 4), 77)))
    assert decoded.getpixel((1, 1)) == (77, 77, 77)


def test_decode_applies_exif_orientation() -> None:
    # Stored sideways: 40 wide x 20 high, red on the left, blue on the right. Orientation 6
    # says "rotate 90 degrees clockwise to display", so upright it is 20 x 40, red on top.
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    decoded = decode_image(encode(stored, "JPEG", exif=exif, quality=95))
    assert decoded.size == (20, 40)
    top = decoded.getpixel((10, 5))
    bottom = decoded.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_decode_without_orientation_tag_keeps_the_layout() -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    decoded = decode_image(encode(stored, "JPEG", quality=95))
    assert decoded.size == (40, 20)


@pytest.mark.parametrize(
    "data",
    [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, bytes(range(256)) * 4],
    ids=["text", "png-signature-garbage", "binary-garbage"],
)
def test_decode_rejects_non_images(data: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        decode_image(data)


def test_decode_rejects_empty_bytes() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_decode_rejects_truncated_jpeg() -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    data = encode(photo, "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_decode_rejects_images_above_the_pixel_limit_before_decoding() -> None:
    data = encode(Image.new("RGB", (100, 60)))
    with pytest.raises(ImageDecodeError, match="too large: 100x60 = 6000 pixels"):
        decode_image(data, max_pixels=5999)
    assert decode_image(data, max_pixels=6000).size == (100, 60)


def test_default_pixel_limit_takes_camera_photos_and_refuses_6300_by_6300() -> None:
    # A 12 MP phone photo, 24 MP cameras (6000x4000) and Fujifilm's 26 MP (6240x4160) fit.
    for width, height in ((4032, 3024), (6000, 4000), (6240, 4160)):
        assert width * height <= MAX_IMAGE_PIXELS
    assert MAX_IMAGE_PIXELS < 6300 * 6300 < Image.MAX_IMAGE_PIXELS


def test_a_png_of_a_few_hundred_bytes_declaring_6300x6300_is_refused_from_its_header() -> None:
    data = png_claiming(6300, 6300)
    assert len(data) < 300
    message = "too large: 6300x6300 = 39690000 pixels, the limit is 26000000"
    with peak_rss_growth() as growth:
        with pytest.raises(ImageTooLargeError, match=message):
            decode_image(data, formats=ACCEPTED_FORMATS)
        with pytest.raises(ImageTooLargeError, match=message):
            prepare_image(data, formats=ACCEPTED_FORMATS)
    assert growth.bytes < 8 * MIB, "the 40 MB of grey pixels must not be allocated"


def test_image_decode_error_is_a_value_error() -> None:
    assert issubclass(ImageDecodeError, ValueError)


# --- decode_image: hostile and unusual files ---------------------------------------------------


def _photo(photos: list[Path], size: tuple[int, int] | None = None) -> Image.Image:
    with Image.open(photos[0]) as image:
        rgb = image.convert("RGB")
    return rgb if size is None else rgb.resize(size)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("kept", [0.9, 0.5, 0.1])
def test_decode_refuses_a_truncated_file_as_corrupt(
    photos: list[Path], fmt: str, kept: float
) -> None:
    data = encode(_photo(photos), fmt)
    with pytest.raises(CorruptImageError, match=f"corrupt or truncated {fmt} data"):
        decode_image(data[: int(len(data) * kept)], formats=ACCEPTED_FORMATS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_refuses_a_file_cut_inside_its_header_as_not_an_image(
    photos: list[Path], fmt: str
) -> None:
    with pytest.raises(UnsupportedImageError, match="not a recognised image"):
        decode_image(encode(_photo(photos), fmt)[:16], formats=ACCEPTED_FORMATS)


@pytest.fixture(scope="module")
def png_bomb_50000() -> bytes:
    return png_bomb(50_000, 50_000)  # ~300 KB; 2.5 G pixels, 7.5 GB as RGB


@pytest.mark.parametrize("kind", ["png-50000x50000-1bit", "png-8000x8000-grey", "jpeg-7000x7000"])
def test_decode_refuses_decompression_bombs_from_the_header(
    photos: list[Path], png_bomb_50000: bytes, kind: str
) -> None:
    data = {
        # Over twice Pillow's own limit: Image.open refuses it.
        "png-50000x50000-1bit": lambda: png_bomb_50000,
        # 64 MP: under Pillow's limit, over ours (26 MP); 64 MB of grey, 192 MB as RGB.
        "png-8000x8000-grey": lambda: png_bomb(8000, 8000, bit_depth=8),
        # A small JPEG whose frame header claims 49 MP.
        "jpeg-7000x7000": lambda: jpeg_with_size(
            encode(_photo(photos, (64, 48)), "JPEG"), 7000, 7000
        ),
    }[kind]()
    started = time.perf_counter()
    with peak_rss_growth() as growth, pytest.raises(ImageTooLargeError, match="too large"):
        decode_image(data, formats=ACCEPTED_FORMATS)
    elapsed = time.perf_counter() - started
    print(f"\n{kind}: {len(data)} bytes, refused in {elapsed * 1000:.1f} ms, ", end="")
    print(f"peak RSS +{growth.mib:.2f} MiB")
    assert growth.bytes < 8 * MIB, "the pixels must not be decoded"
    assert elapsed < 1.0


def test_the_same_bomb_decoded_without_the_limit_costs_hundreds_of_mib() -> None:
    """The control for the test above: the measurement sees a decode when there is one."""
    data = png_bomb(8000, 8000, bit_depth=8)
    with peak_rss_growth() as growth:
        decoded = decode_image(data, max_pixels=8000 * 8000, formats=ACCEPTED_FORMATS)
    assert decoded.size == (8000, 8000)
    del decoded
    print(f"\npng-8000x8000-grey decoded with the limit lifted: peak RSS +{growth.mib:.0f} MiB")
    assert growth.bytes > 150 * MIB


def test_decode_scales_16_bit_greyscale_png_to_8_bits(photos: list[Path]) -> None:
    grey = np.asarray(_photo(photos).convert("L"))
    data = encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG")  # Pillow: mode I;16
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded = decode_image(data, formats=ACCEPTED_FORMATS)
    assert decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), np.repeat(grey[..., None], 3, axis=2))


def test_decode_scales_16_bit_greyscale_by_its_high_byte() -> None:
    values = np.array([[0, 255, 256, 32767, 65535]], dtype=np.uint16)
    decoded = decode_image(png16(values))
    assert np.asarray(decoded)[0, :, 0].tolist() == [0, 0, 1, 127, 255]


@pytest.mark.parametrize("channels", [3, 4])
def test_decode_reads_16_bit_colour_png(photos: list[Path], channels: int) -> None:
    rgb = np.asarray(_photo(photos, (160, 120)))
    alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    pixels = rgb if channels == 3 else np.dstack([rgb, alpha])
    decoded = decode_image(png16(pixels.astype(np.uint16) * 257), formats=ACCEPTED_FORMATS)
    np.testing.assert_array_equal(np.asarray(decoded), rgb)


def test_decode_converts_cmyk_jpeg_to_the_photos_colours(photos: list[Path]) -> None:
    photo = _photo(photos)
    original = np.asarray(photo, dtype=np.int16)
    data = encode(photo.convert("CMYK"), "JPEG", quality=95)
    assert b"Adobe" in data  # inverted CMYK with an Adobe marker, as Photoshop writes it
    decoded = decode_image(data, formats=ACCEPTED_FORMATS)
    assert decoded.mode == "RGB" and decoded.size == photo.size
    as_rgb_jpeg = decode_image(encode(photo, "JPEG", quality=95))
    error = np.abs(np.asarray(decoded, dtype=np.int16) - original).mean()
    rgb_error = np.abs(np.asarray(as_rgb_jpeg, dtype=np.int16) - original).mean()
    inverted_error = np.abs(255 - np.asarray(decoded, dtype=np.int16) - original).mean()
    print(
        f"\nmean abs error vs the photo: CMYK JPEG {error:.2f}, RGB JPEG {rgb_error:.2f}, ", end=""
    )
    print(f"CMYK read inverted {inverted_error:.1f}")
    assert error < rgb_error + 1.0
    assert inverted_error > 30


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_decode_uses_the_first_frame_of_an_animation(photos: list[Path], fmt: str) -> None:
    first = _photo(photos, (160, 120))
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    data = animated([first, second], fmt)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.n_frames == 2
    decoded = decode_image(data, formats=ACCEPTED_FORMATS)
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(first))


@pytest.mark.parametrize("frames", [1, 2])
def test_decode_refuses_gif_still_or_animated(photos: list[Path], frames: int) -> None:
    first = _photo(photos, (160, 120))
    data = animated([first, first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)][:frames], "GIF")
    with pytest.raises(UnsupportedImageError, match="accepted: JPEG, PNG, WEBP"):
        decode_image(data, formats=ACCEPTED_FORMATS)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_shows_every_exif_orientation_upright(orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    upright = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    decoded = decode_image(with_orientation(upright, orientation), formats=ACCEPTED_FORMATS)
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(upright))


def _sideways_red_over_blue() -> Image.Image:
    """Stored for orientation 6: upright it is red on top, blue below (20 x 40)."""
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    return stored


def test_decode_applies_the_orientation_of_an_exif_block_pillow_cannot_rewrite() -> None:
    # ImageOps.exif_transpose raises TypeError on this block (an ASCII XResolution).
    data = encode(_sideways_red_over_blue(), "JPEG", exif=corrupt_exif(6), quality=95)
    decoded = decode_image(data, formats=ACCEPTED_FORMATS)
    assert decoded.size == (20, 40)
    assert decoded.getpixel((10, 5))[0] > 200 and decoded.getpixel((10, 35))[2] > 200


def test_decode_ignores_an_unparsable_exif_block() -> None:
    garbage = b"Exif\x00\x00" + bytes(range(256)) * 2
    data = encode(_sideways_red_over_blue(), "JPEG", exif=garbage, quality=95)
    assert decode_image(data, formats=ACCEPTED_FORMATS).size == (40, 20)


def _mutated(data: bytes, rng: random.Random, span: tuple[int, int] | None = None) -> bytes:
    """``data`` with a few random byte changes; within ``span`` only substitutions (so the
    surrounding structure stays intact), else also deletions and insertions."""
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if span is not None:
            mutated[rng.randrange(*span)] = rng.randrange(256)
            continue
        position = rng.randrange(len(mutated))
        choice = rng.random()
        if choice < 0.6:
            mutated[position] = rng.randrange(256)
        elif choice < 0.8:
            del mutated[position : position + rng.randint(1, 64)]
        else:
            mutated[position:position] = rng.randbytes(rng.randint(1, 16))
    return bytes(mutated)


def _decode_outcomes(samples: Iterator[bytes]) -> dict[str, int]:
    """Counts of what decoding each sample gave; anything but an image or an
    ImageDecodeError would be a 500 in the API."""
    outcomes: dict[str, int] = {}
    for data in samples:
        try:
            decoded = decode_image(data, formats=ACCEPTED_FORMATS)
            outcome = "decoded" if decoded.mode == "RGB" else f"mode {decoded.mode}"
        except ImageDecodeError as error:
            outcome = type(error).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about each corrupt block
def test_mutated_exif_blocks_never_fail_the_decoder() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "camera maker"
    exif[0x0110] = "camera model"
    data = encode(Image.new("RGB", (32, 24), (200, 10, 10)), "JPEG", exif=exif)
    start = data.index(b"Exif\x00\x00") + 6
    end = start - 8 + int.from_bytes(data[start - 8 : start - 6], "big")
    rng = random.Random(0)
    outcomes = _decode_outcomes(_mutated(data, rng, (start, end)) for _ in range(3000))
    print(f"\n3000 mutated EXIF blocks: {outcomes}")
    assert set(outcomes) == {"decoded"}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_mutated_files_give_an_image_or_a_typed_error(photos: list[Path], fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 3
    data = encode(_photo(photos, (96, 72)), fmt, exif=exif)
    rng = random.Random(fmt)
    outcomes = _decode_outcomes(_mutated(data, rng) for _ in range(1000))
    print(f"\n1000 mutated {fmt} files: {outcomes}")
    assert set(outcomes) <= {
        "decoded",
        "UnsupportedImageError",
        "CorruptImageError",
        "ImageTooLargeError",
    }


# --- reduced decoding (the request path) -------------------------------------------------------


@pytest.mark.parametrize(
    ("upright", "orientation", "decoded"),
    [
        ((6000, 4000), 1, (750, 500)),  # 1/8
        ((4032, 3024), 1, (1008, 756)),  # 1/4 (1/8 would be 504x378, under 640x480)
        ((1280, 960), 1, (640, 480)),  # 1/2, exactly the input size
        ((1279, 959), 1, (1279, 959)),  # 1279 < 2 x 640: full size
        ((3024, 4032), 6, (378, 504)),  # a portrait phone photo stored sideways: 1/8
        ((20000, 1200), 1, (2500, 150)),  # a panorama: 1/8 is the most DCT scaling gives
    ],
)
def test_a_large_jpeg_is_decoded_at_no_more_than_the_model_needs(
    upright: tuple[int, int], orientation: int, decoded: tuple[int, int]
) -> None:
    data = with_orientation(Image.new("RGB", upright, (90, 140, 200)), orientation, "JPEG")
    reduced = decode_reduced(data, formats=ACCEPTED_FORMATS)
    target = resized_size(*upright)
    assert reduced.size == upright  # the original's, for the boxes and image_size
    assert reduced.target == target
    assert reduced.image.size == decoded and reduced.image.mode == "RGB"
    width, height = reduced.image.size
    assert width >= target[0] and height >= target[1]  # never upscaled from less than needed
    # ... and the next DCT step would not be taken (Pillow's rule: the original at least that
    # multiple of the resized size in both sides), unless this is already 1/8.
    scale = round(upright[0] / width)
    assert scale == 8 or any(upright[i] < 2 * scale * target[i] for i in (0, 1))


def test_a_png_cannot_be_decoded_reduced_but_greyscale_stays_one_byte_per_pixel() -> None:
    reduced = decode_reduced(encode(Image.new("L", (2000, 1500), 77)), formats=ACCEPTED_FORMATS)
    assert reduced.image.size == reduced.size == (2000, 1500)
    assert reduced.image.mode == "L"
    assert reduced.target == (640, 480)


def _model_inputs_both_ways(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the request path's inputs, full decoding's), checking the original size is reported."""
    inputs, size = prepare_image(data, formats=ACCEPTED_FORMATS)
    full = decode_image(data, formats=ACCEPTED_FORMATS)
    assert size == full.size
    return inputs, preprocess(full)


@pytest.mark.parametrize(
    "kind",
    ["JPEG", "JPEG EXIF 6", "CMYK JPEG", "grey PNG", "16-bit PNG", "RGBA PNG", "palette PNG"],
)
def test_the_request_path_gives_full_decodings_inputs_when_nothing_is_reduced(
    photos: list[Path], kind: str
) -> None:
    photo = _photo(photos, (900, 700))  # under twice 640x480: no DCT scaling
    grey = np.asarray(photo.convert("L"))
    data = {
        "JPEG": lambda: encode(photo, "JPEG", quality=90),
        "JPEG EXIF 6": lambda: with_orientation(photo, 6, "JPEG"),
        "CMYK JPEG": lambda: encode(photo.convert("CMYK"), "JPEG", quality=90),
        "grey PNG": lambda: encode(Image.fromarray(grey)),
        "16-bit PNG": lambda: png16(grey.astype(np.uint16) * 257),
        "RGBA PNG": lambda: encode(photo.convert("RGBA")),
        "palette PNG": lambda: encode(photo.convert("P")),
    }[kind]()
    inputs, expected = _model_inputs_both_ways(data)
    np.testing.assert_array_equal(inputs["content_size"], expected["content_size"])
    np.testing.assert_array_equal(inputs["pixels"], expected["pixels"])


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_large_jpeg_decoded_reduced_gives_close_pixels_of_the_same_size(
    photos: list[Path], orientation: int
) -> None:
    big = _photo(photos).resize((4608, 3456), Image.Resampling.BICUBIC)  # 16 MP
    inputs, expected = _model_inputs_both_ways(with_orientation(big, orientation, "JPEG"))
    np.testing.assert_array_equal(inputs["content_size"], expected["content_size"])
    height, width = inputs["content_size"][0]
    difference = np.abs(
        inputs["pixels"][0, :height, :width].astype(np.int16)
        - expected["pixels"][0, :height, :width].astype(np.int16)
    )
    print(
        f"\n16 MP JPEG (EXIF {orientation}), 1/4 DCT scaling vs full decoding: mean |Δ| "
        f"{difference.mean():.2f}, 99th percentile {np.percentile(difference, 99):.0f}, "
        f"max {difference.max()} (of 255)"
    )
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 6


def test_a_large_jpeg_is_prepared_many_times_faster_than_decoded_in_full(
    photos: list[Path],
) -> None:
    data = encode(_photo(photos).resize((6000, 4000), Image.Resampling.BICUBIC), "JPEG")

    def seconds(step: object) -> float:
        best = math.inf
        for _ in range(3):
            started = time.perf_counter()
            step()  # type: ignore[operator]
            best = min(best, time.perf_counter() - started)
        return best

    reduced = seconds(lambda: prepare_image(data, formats=ACCEPTED_FORMATS))
    full = seconds(lambda: preprocess(decode_image(data, formats=ACCEPTED_FORMATS)))
    print(f"\n24 MP JPEG: prepared in {reduced * 1000:.0f} ms, in full {full * 1000:.0f} ms")
    assert reduced * 4 < full


# --- resize arithmetic -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((640, 480), (640, 480)),  # already the input size
        ((1280, 480), (640, 240)),  # wide landscape: width-bound
        ((480, 640), (360, 480)),  # portrait: height-bound
        ((773, 512), (640, 423)),  # truncation, not rounding (423.9)
        ((429, 640), (321, 480)),
        ((500, 375), (640, 480)),  # 4:3, scaled up
        ((64, 48), (640, 480)),  # small images are scaled up too
        ((100, 50), (640, 320)),
        ((33, 17), (640, 329)),  # 329.7 truncated
        ((1000, 999), (480, 480)),
        ((7, 5000), (1, 480)),  # transformers would ask Pillow for width 0
    ],
)
def test_resized_size_matches_transformers_arithmetic(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert resized_size(*size) == expected


# --- preprocess --------------------------------------------------------------------------------


def test_preprocess_gives_the_model_inputs_uint8_and_content_size() -> None:
    colour = (255, 0, 128)
    inputs = preprocess(Image.new("RGB", (200, 100), colour))  # → 640 x 320, padded to 480
    assert set(inputs) == {spec.name for spec in YOLOS.inputs}
    for spec in YOLOS.inputs:
        assert inputs[spec.name].dtype == spec.numpy_dtype
        assert inputs[spec.name].shape == (1, *spec.dims)
    pixels = inputs["pixels"][0]
    assert np.all(pixels[:320] == colour)
    assert np.all(pixels[320:] == 0)  # a placeholder: the graph zeroes it after normalising
    assert inputs["content_size"].tolist() == [[320, 640]]


def test_preprocess_pads_right_of_portrait_images() -> None:
    inputs = preprocess(Image.new("RGB", (300, 400), (7, 8, 9)))  # → 360 x 480
    assert inputs["content_size"].tolist() == [[480, 360]]
    assert np.all(inputs["pixels"][0, :, :360] == (7, 8, 9))
    assert np.all(inputs["pixels"][0, :, 360:] == 0)


def test_preprocess_without_resize_keeps_the_decoded_bytes() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    inputs = preprocess(Image.fromarray(pixels))
    np.testing.assert_array_equal(inputs["pixels"][0], pixels)
    assert inputs["content_size"].tolist() == [[480, 640]]


def test_preprocess_resizes_with_pillow_bilinear() -> None:
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    expected = np.asarray(image.resize((640, 480), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(preprocess(image)["pixels"][0], expected)
    np.testing.assert_array_equal(resized_pixels(image), expected)


def test_preprocess_converts_non_rgb_images() -> None:
    inputs = preprocess(Image.new("L", (640, 480), 255))
    assert np.all(inputs["pixels"] == 255)


def test_preprocess_batch_stacks_items() -> None:
    images = [Image.new("RGB", (640, 480), (10, 20, 30)), Image.new("RGB", (100, 300), (90, 0, 9))]
    batch = preprocess_batch(images)
    assert batch["pixels"].shape == (2, 480, 640, 3)
    assert batch["pixels"].dtype == np.uint8
    assert batch["content_size"].dtype == np.int32
    assert batch["content_size"].tolist() == [[480, 640], [480, 160]]
    for index, image in enumerate(images):
        single = preprocess(image)
        np.testing.assert_array_equal(batch["pixels"][index], single["pixels"][0])
        np.testing.assert_array_equal(batch["content_size"][index], single["content_size"][0])


# --- postprocess -------------------------------------------------------------------------------


def make_outputs(queries: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Zero logits (every class equally likely) and a centred box for every query."""
    logits = np.zeros((queries, 92), dtype=np.float32)
    boxes = np.tile(np.array([0.5, 0.5, 0.2, 0.2], dtype=np.float32), (queries, 1))
    return logits, boxes


def test_class_scores_softmax_values_and_no_object_dropped() -> None:
    logits, _ = make_outputs(2)
    logits[0, 7] = 2.0
    logits[0, 91] = 5.0  # "no object" is the most likely class, but is never reported
    scores, label_ids = class_scores(logits)
    denominator = 90 + math.exp(2.0) + math.exp(5.0)
    assert label_ids.tolist() == [7, 0]
    assert scores[0] == pytest.approx(math.exp(2.0) / denominator, rel=1e-6)
    assert scores[1] == pytest.approx(1 / 92, rel=1e-6)


def test_class_scores_are_stable_for_huge_logits() -> None:
    logits = np.full((1, 92), 1000.0, dtype=np.float32)
    logits[0, 3] = 1010.0
    scores, label_ids = class_scores(logits)
    assert np.isfinite(scores).all()
    assert label_ids.tolist() == [3]
    assert scores[0] == pytest.approx(math.exp(10) / (91 + math.exp(10)), rel=1e-6)


def test_class_scores_work_on_batches() -> None:
    logits = np.zeros((4, 100, 92), dtype=np.float32)
    logits[2, 50, 17] = 3.0
    scores, label_ids = class_scores(logits)
    assert scores.shape == label_ids.shape == (4, 100)
    assert label_ids[2, 50] == 17
    assert scores[2, 50] > scores[2, 49]


def test_boxes_to_pixels_converts_centre_format() -> None:
    boxes = np.array([[0.5, 0.25, 0.2, 0.1], [0.0, 1.0, 0.4, 0.6]], dtype=np.float32)
    pixels = boxes_to_pixels(boxes, width=200, height=100)
    np.testing.assert_allclose(pixels[0], [80.0, 20.0, 120.0, 30.0], atol=1e-4)
    # Not clipped to the image, like transformers.
    np.testing.assert_allclose(pixels[1], [-40.0, 70.0, 40.0, 130.0], atol=1e-4)


def test_postprocess_returns_pixel_boxes_labels_and_scores() -> None:
    logits, boxes = make_outputs(1)
    logits[0, 18] = 5.0
    boxes[0] = [0.5, 0.25, 0.2, 0.1]
    detections = postprocess(logits, boxes, (200, 100), LABELS, threshold=0.5)
    assert len(detections) == 1
    detection = detections[0]
    assert isinstance(detection, Detection)
    assert detection.label_id == 18
    assert detection.label == "class-18"
    assert detection.score == pytest.approx(math.exp(5.0) / (91 + math.exp(5.0)), rel=1e-6)
    assert detection.box == pytest.approx((80.0, 20.0, 120.0, 30.0), abs=1e-4)
    assert all(isinstance(value, float) for value in detection.box)


def test_postprocess_threshold_is_strict() -> None:
    logits, boxes = make_outputs(1)  # score exactly 1/92 (float64)
    assert postprocess(logits, boxes, (10, 10), LABELS, threshold=1 / 92) == []
    assert len(postprocess(logits, boxes, (10, 10), LABELS, threshold=1 / 92 - 1e-9)) == 1


def test_postprocess_drops_queries_where_no_object_wins() -> None:
    logits, boxes = make_outputs(2)
    logits[0, 91] = 10.0  # query 0: "no object" with p ~ 0.9996, best object class tiny
    logits[1, 5] = 10.0
    detections = postprocess(logits, boxes, (10, 10), LABELS, threshold=0.5)
    assert [d.label_id for d in detections] == [5]


def test_postprocess_keeps_query_order_not_score_order() -> None:
    logits, boxes = make_outputs(3)
    logits[0, 1] = 3.0
    logits[1, 2] = 6.0
    logits[2, 3] = 5.0
    boxes[:, 0] = [0.1, 0.2, 0.3]
    detections = postprocess(logits, boxes, (100, 100), LABELS, threshold=0.1)
    assert [d.label_id for d in detections] == [1, 2, 3]
    assert [round((d.box[0] + d.box[2]) / 2, 3) for d in detections] == [10.0, 20.0, 30.0]


def test_postprocess_maps_label_ids_to_the_given_names() -> None:
    logits, boxes = make_outputs(1)
    logits[0, 90] = 9.0
    names = ["N/A"] + [f"name-{index}" for index in range(1, 91)]
    (detection,) = postprocess(logits, boxes, (10, 10), names, threshold=0.5)
    assert (detection.label_id, detection.label) == (90, "name-90")


def test_postprocess_rejects_mismatched_labels_and_shapes() -> None:
    logits, boxes = make_outputs(2)
    with pytest.raises(ValueError, match="90 labels for 91 classes"):
        postprocess(logits, boxes, (10, 10), LABELS[:90], threshold=0.5)
    with pytest.raises(ValueError, match="pred_boxes"):
        postprocess(logits, boxes[:1], (10, 10), LABELS, threshold=0.5)


def test_postprocess_batch_uses_each_items_size() -> None:
    logits = np.zeros((2, 4, 92), dtype=np.float32)
    logits[:, :, 1] = 8.0
    boxes = np.tile(np.array([0.5, 0.5, 1.0, 1.0], dtype=np.float32), (2, 4, 1))
    results = postprocess_batch(logits, boxes, [(640, 480), (100, 50)], LABELS, threshold=0.5)
    assert [len(items) for items in results] == [4, 4]
    assert results[0][0].box == pytest.approx((0.0, 0.0, 640.0, 480.0))
    assert results[1][3].box == pytest.approx((0.0, 0.0, 100.0, 50.0))
    with pytest.raises(ValueError, match="image sizes"):
        postprocess_batch(logits, boxes, [(640, 480)], LABELS, threshold=0.5)


def test_detection_is_frozen() -> None:
    detection = Detection(box=(0.0, 0.0, 1.0, 1.0), label="cat", score=0.9, label_id=17)
    with pytest.raises(AttributeError):
        detection.score = 0.1  # type: ignore[misc]


def test_module_does_not_import_torch_or_transformers() -> None:
    code = (
        "import sys, serving.detection; "
        "bad = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]; "
        "print(*bad); sys.exit(1 if bad else 0)"
    )
    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root, check=False
    )
    assert result.returncode == 0, f"imported: {result.stdout} {result.stderr}"
