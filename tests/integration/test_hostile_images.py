"""Hostile and unusual images through the real app and a real tritonserver: REST uploads (the
app in-process, with its lifespan) and WebSocket frames and the memory of decompression bombs
(uvicorn in its own process, so its peak memory is the server's alone).

What the API does, case by case (README "Hostile input"):

* truncated JPEG/PNG → 422 "corrupt or truncated"; cut inside the header → 415;
* empty file part → 415 "empty image"; no ``image`` part at all (empty body, a raw image body)
  → 422 from validation, naming the missing field;
* decompression bombs → 413 from the header, the pixels never decoded (among them a PNG of 178
  bytes declaring 6300x6300, over the 26 MP limit);
* a large JPEG is decoded reduced (DCT scaling) to what the model needs: the detections of full
  decoding, within a small tolerance, at a fraction of the memory;
* the part's declared type must be image/jpeg, image/png, image/webp or
  application/octet-stream (parameters and case ignored), else 415 before the bytes are read;
  the format is then read from the bytes: a PNG labelled image/jpeg is decoded as PNG, a PDF or
  text labelled image/jpeg is 415 "not a recognised image";
* animated WebP and PNG (APNG): the first frame is used; GIF (still or animated) → 415;
* CMYK JPEG and 16-bit PNG are converted to 8-bit RGB like their ordinary versions;
* EXIF orientation is applied: ``image_size`` and the boxes are the upright image's, also when
  the EXIF block is one Pillow cannot rewrite.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from PIL import Image

from serving.client import InProcessOrtClient
from serving.detection import decode_image, postprocess, preprocess
from serving.launcher import LocalTriton
from serving.model_repository import read_labels
from tests.helpers.hostile_images import (
    animated,
    corrupt_exif,
    encode,
    jpeg_with_size,
    png16,
    png_blank,
    png_bomb,
    png_claiming,
    with_orientation,
)
from tests.helpers.memory import MIB, peak_rss_growth
from tests.integration.api_client import app_settings, running_app
from tests.integration.live_server import LiveServer, live_api

THRESHOLD = 0.0  # random tiny weights: every query scores ~1/92, so all 100 queries come back
OCTET = "application/octet-stream"

# From a stored (camera) image to the upright one, per EXIF orientation (EXIF 2.32, 4.6.4).
UPRIGHT_FROM_STORED = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_270,  # 90 degrees clockwise
    8: Image.Transpose.ROTATE_90,
}


@pytest.fixture(scope="module")
def photo(photos: list[Path]) -> Image.Image:
    with Image.open(photos[0]) as image:
        return image.convert("RGB")


Upload = tuple[bytes, str] | dict[str, Any]


def _post_all(
    triton: LocalTriton, exported_repository: Path, uploads: list[Upload]
) -> list[httpx.Response]:
    """POST /object-detection for each upload (bytes and declared type, or httpx arguments)
    through one app."""

    async def run() -> list[httpx.Response]:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            replies = []
            for upload in uploads:
                if isinstance(upload, dict):
                    arguments = upload
                else:
                    data, content_type = upload
                    arguments = {"files": {"image": ("upload", data, content_type)}}
                replies.append(
                    await client.post(
                        "/object-detection", params={"threshold": THRESHOLD}, **arguments
                    )
                )
            return replies

    return asyncio.run(run())


def _ok(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert len(body["objects"]) == 100  # threshold 0: every query
    return body


def _assert_same_detections(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["image_size"] == expected["image_size"]
    assert [o["label"] for o in got["objects"]] == [o["label"] for o in expected["objects"]]
    for mine, theirs in zip(got["objects"], expected["objects"], strict=True):
        assert mine["box"] == pytest.approx(theirs["box"], abs=1e-3)
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-6)


def _likeness(got: dict[str, Any], expected: dict[str, Any]) -> tuple[float, float]:
    """(largest box difference as a fraction of the image's longer side, share of queries with
    the same label): how alike two detections of slightly different pixels are."""
    boxes = np.array([o["box"] for o in got["objects"]])
    reference = np.array([o["box"] for o in expected["objects"]])
    side = max(expected["image_size"])
    labels = [
        mine["label"] == theirs["label"]
        for mine, theirs in zip(got["objects"], expected["objects"], strict=True)
    ]
    return float(np.abs(boxes - reference).max() / side), float(np.mean(labels))


# --- corrupt, empty, and mislabelled uploads -------------------------------------------------


def test_truncated_jpeg_and_png_are_422_and_a_cut_header_415(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image
) -> None:
    jpeg, png = encode(photo, "JPEG"), encode(photo, "PNG")
    replies = _post_all(
        triton,
        exported_repository,
        [
            (jpeg[: len(jpeg) // 2], "image/jpeg"),
            (png[: len(png) // 2], "image/png"),
            (jpeg[:16], "image/jpeg"),
            (png[:16], "image/png"),
        ],
    )
    statuses = [reply.status_code for reply in replies]
    details = [reply.json()["detail"] for reply in replies]
    assert statuses == [422, 422, 415, 415]
    assert "corrupt or truncated JPEG data" in details[0]
    assert "corrupt or truncated PNG data" in details[1]
    assert all("not a recognised image" in detail for detail in details[2:])


def test_an_empty_upload_is_415_and_a_body_without_the_image_part_422(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image
) -> None:
    empty_part, empty_body, raw_image = _post_all(
        triton,
        exported_repository,
        [
            (b"", "image/jpeg"),
            {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            {"content": encode(photo, "JPEG"), "headers": {"content-type": "image/jpeg"}},
        ],
    )
    assert empty_part.status_code == 415
    assert empty_part.json()["detail"] == "empty image: no bytes were uploaded"
    for reply in (empty_body, raw_image):
        assert reply.status_code == 422
        (issue,) = reply.json()["detail"]
        assert issue["loc"] == ["body", "image"] and issue["msg"] == "Field required"


def test_the_declared_type_must_be_an_image_type_and_the_bytes_decide_the_format(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image
) -> None:
    jpeg = encode(photo, "JPEG", quality=90)
    pdf = encode(photo, "PDF")
    assert pdf.startswith(b"%PDF")
    replies = _post_all(
        triton,
        exported_repository,
        [
            (jpeg, "image/jpeg"),
            (pdf, "image/jpeg"),
            (b"just some text, not an image\n" * 10, "image/jpeg"),
            (jpeg, "text/plain"),
            (jpeg, "application/pdf"),
            (jpeg, "image/png"),  # mislabelled, but an image: the bytes decide
            (jpeg, "IMAGE/JPEG; charset=binary"),
            (jpeg, OCTET),
        ],
    )
    reference, pdf_reply, text_reply, as_text, as_pdf, *accepted = replies
    expected = _ok(reference)
    for reply in (pdf_reply, text_reply):
        assert reply.status_code == 415
        assert reply.json()["detail"] == "not a recognised image (accepted: JPEG, PNG, WEBP)"
    assert as_text.status_code == as_pdf.status_code == 415
    assert as_text.json()["detail"].startswith("content type 'text/plain'; send image/jpeg")
    for reply in accepted:
        _assert_same_detections(_ok(reply), expected)


# --- decompression bombs -----------------------------------------------------------------------


def test_decompression_bombs_are_413_from_the_header_in_bounded_memory(
    server: LiveServer, photo: Image.Image
) -> None:
    bombs = {
        "PNG 50000x50000 (1 bit)": png_bomb(50_000, 50_000),
        "PNG 8000x8000 (grey)": png_bomb(8000, 8000, bit_depth=8),
        "PNG header 6300x6300, 178 bytes": png_claiming(6300, 6300),
        "JPEG header 7000x7000": jpeg_with_size(encode(photo.resize((64, 48)), "JPEG"), 7000, 7000),
    }
    url = f"{server.base_url}/object-detection"
    with httpx.Client(timeout=30) as client:
        client.post(url, files={"image": ("warm-up.jpg", encode(photo, "JPEG"), "image/jpeg")})
        for name, data in bombs.items():
            started = time.perf_counter()
            with peak_rss_growth(server.process.pid) as growth:
                reply = client.post(url, files={"image": ("bomb", data, OCTET)})
            elapsed = time.perf_counter() - started
            print(
                f"\n{name}: {len(data)} bytes → {reply.status_code} in {elapsed * 1000:.0f} ms, "
                f"server peak RSS +{growth.mib:.2f} MiB"
            )
            assert reply.status_code == 413, reply.text
            assert "too large" in reply.json()["detail"]
            assert growth.bytes < 16 * MIB, "the bomb's pixels must not be decoded"
        after = client.post(url, files={"image": ("p.jpg", encode(photo, "JPEG"), "image/jpeg")})
    assert after.status_code == 200


# --- large images: reduced decoding and the memory of concurrent uploads -----------------------

# The largest PNG under the 26 MP limit (Fujifilm's 26 MP sensor).
LARGEST_PNG: tuple[int, int] = (6240, 4160)
LARGE_JPEG: tuple[int, int] = (6000, 4000)  # 24 MP, a common camera's full size
CONCURRENT_UPLOADS = 8


def _upscaled(path: Path, pixels: int) -> Image.Image:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = (pixels / (rgb.width * rgb.height)) ** 0.5
    size = (round(rgb.width * scale), round(rgb.height * scale))
    return rgb.resize(size, Image.Resampling.BICUBIC)


def test_large_jpegs_decoded_reduced_give_the_detections_of_full_decoding(
    triton: LocalTriton, exported_repository: Path, photos: list[Path]
) -> None:
    """Each photo scaled up to 20 MP (decoded at 1/8: over 8 times the model's input size)
    through the API, against full decoding through in-process ONNX Runtime."""
    labels = read_labels(exported_repository / "yolos")
    local = InProcessOrtClient(exported_repository, ["yolos"])
    uploads = [encode(_upscaled(path, 20_000_000), "JPEG", quality=90) for path in photos]
    replies = _post_all(triton, exported_repository, [(data, "image/jpeg") for data in uploads])

    async def full_decoding(data: bytes) -> dict[str, Any]:
        image = decode_image(data)
        raw = await local.infer("yolos", preprocess(image))
        objects = postprocess(
            raw.outputs["logits"][0], raw.outputs["pred_boxes"][0], image.size, labels, THRESHOLD
        )
        return {
            "image_size": list(image.size),
            "objects": [{"box": list(o.box), "label": o.label} for o in objects],
        }

    worst_box, worst_labels = 0.0, 1.0
    for path, data, reply in zip(photos, uploads, replies, strict=True):
        expected = asyncio.run(full_decoding(data))
        body = _ok(reply)
        assert body["image_size"] == expected["image_size"]
        box_difference, same_labels = _likeness(body, expected)
        worst_box, worst_labels = max(worst_box, box_difference), min(worst_labels, same_labels)
        print(
            f"\n{path.name} at {body['image_size'][0]}x{body['image_size'][1]}: boxes within "
            f"{box_difference:.1e} of the longer side, {same_labels:.0%} same labels"
        )
    print(f"\n{len(photos)} photos: worst {worst_box:.1e} of the side, {worst_labels:.0%} labels")
    assert worst_box < 1e-4 and worst_labels >= 0.95


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError("VmRSS")


@pytest.mark.parametrize("kind", ["largest PNG", "PNG header 6300x6300", "24 MP JPEG"])
def test_concurrent_large_uploads_cost_bounded_memory(
    triton: LocalTriton,
    exported_repository: Path,
    photo: Image.Image,
    tmp_path: Path,
    kind: str,
) -> None:
    """8 uploads at once, each server fresh (memory a previous burst left would hide growth)."""
    data, expected_status, bound_mib = {
        # Decoded at full size (PNG has no DCT scaling): Pillow's 4 bytes a pixel for RGB,
        # ~110 MiB with the resize, once per preprocess thread (2); decoding as before also
        # kept an RGB copy (~200 MiB each).
        "largest PNG": (png_blank(*LARGEST_PNG), 200, 300),
        "PNG header 6300x6300": (png_claiming(6300, 6300), 413, 16),
        "24 MP JPEG": (
            encode(photo.resize(LARGE_JPEG, Image.Resampling.BICUBIC), "JPEG", quality=90),
            200,
            64,
        ),
    }[kind]
    with live_api(triton, exported_repository, tmp_path) as server:
        url = f"{server.base_url}/object-detection"
        warm_up = httpx.post(url, files={"image": ("p.jpg", encode(photo, "JPEG"), "image/jpeg")})
        assert warm_up.status_code == 200
        pid = server.process.pid
        start = _rss_mib(pid)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=120) as client:
                replies = await asyncio.gather(
                    *(
                        client.post(url, files={"image": ("big", data, OCTET)})
                        for _ in range(CONCURRENT_UPLOADS)
                    )
                )
            return [reply.status_code for reply in replies]

        started = time.perf_counter()
        with peak_rss_growth(pid) as growth:
            statuses = asyncio.run(burst())
        elapsed = time.perf_counter() - started
        time.sleep(1.0)
        retained = _rss_mib(pid) - start
    print(
        f"\n{CONCURRENT_UPLOADS} x {kind} ({len(data)} bytes) at once: "
        f"{statuses.count(200)} x 200, "
        f"{statuses.count(413)} x 413 in {elapsed:.1f} s; server peak RSS +{growth.mib:.0f} MiB, "
        f"retained +{retained:.0f} MiB"
    )
    assert statuses == [expected_status] * CONCURRENT_UPLOADS
    assert growth.mib < bound_mib


# --- animations, colour spaces, bit depths, orientation --------------------------------------


def test_animations_use_their_first_frame_and_gif_is_415(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image
) -> None:
    first = photo.resize((320, 240))
    second = first.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    replies = _post_all(
        triton,
        exported_repository,
        [
            (encode(first, "PNG"), "image/png"),
            (encode(second, "PNG"), "image/png"),
            (animated([first, second], "WEBP"), "image/webp"),
            (animated([first, second], "PNG"), "image/png"),
            (animated([first, second], "GIF"), OCTET),
        ],
    )
    first_only, second_only, webp, apng, gif = replies
    expected = _ok(first_only)
    assert _likeness(_ok(second_only), expected) != (0.0, 1.0)  # the frames do differ
    _assert_same_detections(_ok(webp), expected)
    _assert_same_detections(_ok(apng), expected)
    assert gif.status_code == 415
    assert gif.json()["detail"] == "not a recognised image (accepted: JPEG, PNG, WEBP)"


def test_cmyk_jpeg_gives_the_detections_of_the_rgb_jpeg(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image
) -> None:
    inverted = Image.eval(photo, lambda value: 255 - value)
    rgb, cmyk, wrong = _post_all(
        triton,
        exported_repository,
        [
            (encode(photo, "JPEG", quality=95), "image/jpeg"),
            (encode(photo.convert("CMYK"), "JPEG", quality=95), "image/jpeg"),
            (encode(inverted, "JPEG", quality=95), "image/jpeg"),  # a CMYK read inverted
        ],
    )
    expected = _ok(rgb)
    box_difference, same_labels = _likeness(_ok(cmyk), expected)
    wrong_difference, wrong_labels = _likeness(_ok(wrong), expected)
    print(
        f"\nCMYK vs RGB JPEG: boxes within {box_difference:.1e} of the image side, "
        f"{same_labels:.0%} same labels (colours inverted: {wrong_difference:.1e}, "
        f"{wrong_labels:.0%})"
    )
    assert _ok(cmyk)["image_size"] == expected["image_size"]
    assert box_difference < 2e-5 and same_labels >= 0.95
    assert not (wrong_difference < 2e-5 and wrong_labels >= 0.95), "the criterion discriminates"


def test_16_bit_pngs_give_the_detections_of_their_8_bit_versions(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image
) -> None:
    rgb = np.asarray(photo)
    grey = np.asarray(photo.convert("L"))
    replies = _post_all(
        triton,
        exported_repository,
        [
            (encode(Image.fromarray(grey), "PNG"), "image/png"),
            (encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"), "image/png"),
            (encode(photo, "PNG"), "image/png"),
            (png16(rgb.astype(np.uint16) * 257), "image/png"),
        ],
    )
    grey8, grey16, rgb8, rgb16 = (_ok(reply) for reply in replies)
    _assert_same_detections(grey16, grey8)
    _assert_same_detections(rgb16, rgb8)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_gives_the_upright_size_and_boxes(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image, orientation: int
) -> None:
    stored_jpeg = with_orientation(photo, orientation, "JPEG")
    with Image.open(io.BytesIO(stored_jpeg)) as stored:
        stored_size = stored.size
        upright = stored.convert("RGB").transpose(UPRIGHT_FROM_STORED[orientation])
    rotated, expected = _post_all(
        triton,
        exported_repository,
        [(stored_jpeg, "image/jpeg"), (encode(upright, "PNG"), "image/png")],
    )
    body = _ok(rotated)
    assert tuple(body["image_size"]) == upright.size == photo.size
    if orientation in (6, 8):
        assert tuple(body["image_size"]) == stored_size[::-1]
    _assert_same_detections(body, _ok(expected))


def test_an_exif_block_pillow_cannot_rewrite_still_gives_the_upright_image(
    triton: LocalTriton, exported_repository: Path, photo: Image.Image
) -> None:
    stored = photo.transpose(Image.Transpose.ROTATE_90)  # as a camera stores orientation 6
    data = encode(stored, "JPEG", exif=corrupt_exif(6), quality=95)
    (reply,) = _post_all(triton, exported_repository, [(data, "image/jpeg")])
    assert tuple(_ok(reply)["image_size"]) == photo.size


# --- the same files as WebSocket frames -------------------------------------------------------


def test_hostile_frames_on_a_stream_get_errors_or_the_rest_endpoints_results(
    server: LiveServer, photo: Image.Image
) -> None:
    grey = np.asarray(photo.convert("L"))
    jpeg = encode(photo, "JPEG")
    frames: dict[str, bytes] = {
        "empty": b"",
        "truncated JPEG": jpeg[: len(jpeg) // 2],
        "PNG bomb": png_bomb(8000, 8000, bit_depth=8),
        "GIF": encode(photo, "GIF"),
        "PDF": encode(photo, "PDF"),
        "CMYK JPEG": encode(photo.convert("CMYK"), "JPEG", quality=95),
        "16-bit PNG": encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "EXIF 6 JPEG": with_orientation(photo, 6, "JPEG"),
        "animated WebP": animated(
            [photo, photo.transpose(Image.Transpose.FLIP_TOP_BOTTOM)], "WEBP"
        ),
    }
    errors = {
        "empty": "not a recognised image",  # refused by its (missing) signature, undecoded
        "truncated JPEG": "corrupt or truncated JPEG data",
        "PNG bomb": "image too large: 8000x8000",
        "GIF": "not a recognised image",
        "PDF": "not a recognised image",
    }
    with httpx.Client(timeout=60) as client:
        rest = {
            name: client.post(
                f"{server.base_url}/object-detection",
                params={"threshold": THRESHOLD},
                files={"image": ("frame", data, OCTET)},
            )
            for name, data in frames.items()
        }

    async def stream() -> dict[str, dict[str, Any]]:
        replies = {}
        async with websockets.connect(f"{server.ws_url}/object-detection", max_size=None) as ws:
            await ws.send(json.dumps({"threshold": THRESHOLD}))
            for name, data in frames.items():  # one at a time: the newest frame would win
                await ws.send(data)
                replies[name] = json.loads(await asyncio.wait_for(ws.recv(), 60))
        return replies

    replies = asyncio.run(stream())
    for number, (name, reply) in enumerate(replies.items(), start=1):
        assert reply["frame"] == number, (name, reply)
        if name in errors:
            assert errors[name] in reply["error"], (name, reply)
            assert rest[name].status_code in (413, 415, 422)
        else:
            assert "error" not in reply, (name, reply)
            _assert_same_detections(reply, _ok(rest[name]))
    assert replies["EXIF 6 JPEG"]["image_size"] == list(photo.size)
