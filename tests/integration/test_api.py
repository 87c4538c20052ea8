"""The REST API through a real local tritonserver: same answers as in-process ONNX Runtime,
batching under concurrency, and every error path with its status code."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from serving.client import InProcessOrtClient
from serving.detection import decode_image, postprocess, preprocess
from serving.launcher import LocalTriton
from serving.model_repository import read_labels
from serving.text import text_inputs
from tests.integration.api_client import app_settings, running_app

TEXTS = [
    "computer cpu memory ram for my mac",
    "the encryption key escrow and the clipper chip",
    "god loves the church and jesus",
    "what is the meaning of religion and faith",
]


async def _expected_classification(local: InProcessOrtClient, labels: list[str], text: str):
    result = await local.infer("newsgroups", text_inputs([text]))
    row = result.outputs["probabilities"][0]
    return labels[int(np.argmax(row))], dict(zip(labels, row.tolist(), strict=True))


def test_prediction_matches_in_process_onnxruntime(
    triton: LocalTriton, exported_repository: Path
) -> None:
    labels = read_labels(exported_repository / "newsgroups")
    local = InProcessOrtClient(exported_repository, ["newsgroups"])

    async def check() -> None:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            for text in TEXTS:
                reply = await client.post("/prediction", json={"text": text})
                assert reply.status_code == 200, reply.text
                body = reply.json()
                category, probabilities = await _expected_classification(local, labels, text)
                assert body["category"] == category
                assert body["model_version"] == "1"
                assert body["probabilities"] == pytest.approx(probabilities, abs=1e-6)
            batch = await client.post("/prediction/batch", json={"texts": TEXTS})
            assert batch.status_code == 200
            categories = [p["category"] for p in batch.json()["predictions"]]
            expected = [(await _expected_classification(local, labels, t))[0] for t in TEXTS]
            assert categories == expected

    asyncio.run(check())


def test_object_detection_matches_in_process_pipeline(
    triton: LocalTriton, exported_repository: Path, photos: list[Path]
) -> None:
    labels = read_labels(exported_repository / "yolos")
    local = InProcessOrtClient(exported_repository, ["yolos"])
    threshold = 0.0  # random tiny weights: every query's score is ~1/92

    async def check() -> None:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            for photo in photos[:3]:
                data = photo.read_bytes()
                kind = "image/png" if photo.suffix == ".png" else "image/jpeg"
                reply = await client.post(
                    "/object-detection",
                    params={"threshold": threshold},
                    files={"image": (photo.name, data, kind)},
                )
                assert reply.status_code == 200, reply.text
                body = reply.json()
                image = decode_image(data)
                raw = await local.infer("yolos", preprocess(image))
                expected = postprocess(
                    raw.outputs["logits"][0], raw.outputs["pred_boxes"][0], image.size, labels, 0.0
                )
                assert body["image_size"] == list(image.size)
                assert len(body["objects"]) == len(expected) > 0
                for got, want in zip(body["objects"], expected, strict=True):
                    assert got["label"] == want.label
                    assert got["box"] == pytest.approx(list(want.box), abs=1e-2)
                    assert got["score"] == pytest.approx(want.score, abs=1e-6)
            default = await client.post(
                "/object-detection", files={"image": ("a.jpg", photos[0].read_bytes(), None)}
            )
            assert default.status_code == 200
            assert default.json()["objects"] == [], "random weights never reach the 0.7 default"

    asyncio.run(check())


def test_concurrent_predictions_are_batched_and_all_correct(
    triton: LocalTriton, exported_repository: Path
) -> None:
    labels = read_labels(exported_repository / "newsgroups")
    local = InProcessOrtClient(exported_repository, ["newsgroups"])
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(200)]

    async def check() -> tuple[int, int]:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (app, client):
            replies = await asyncio.gather(
                *(client.post("/prediction", json={"text": text}) for text in texts)
            )
            for text, reply in zip(texts, replies, strict=True):
                assert reply.status_code == 200, reply.text
                category, _ = await _expected_classification(local, labels, text)
                assert reply.json()["category"] == category
            stats = app.state.services.batchers["newsgroups"].stats
            return stats.items, stats.batches

    items, batches = asyncio.run(check())
    print(f"\n200 concurrent /prediction: {items} items in {batches} batcher calls to Triton")
    assert items == 200
    assert batches < items


def test_batching_off_sends_each_request_alone(
    triton: LocalTriton, exported_repository: Path
) -> None:
    async def check() -> tuple[int, int]:
        settings = app_settings(
            exported_repository, triton_url=triton.grpc_url, batching_enabled=False
        )
        async with running_app(settings) as (app, client):
            replies = await asyncio.gather(
                *(client.post("/prediction", json={"text": t}) for t in TEXTS * 5)
            )
            assert all(reply.status_code == 200 for reply in replies)
            stats = app.state.services.batchers["newsgroups"].stats
            return stats.items, stats.batches

    items, batches = asyncio.run(check())
    assert items == batches == 20


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_full_queue_is_refused_with_503_and_retry_after(
    triton: LocalTriton, exported_repository: Path
) -> None:
    async def check() -> list[httpx.Response]:
        # The batcher's own bound (admission control, which would refuse first, is opened up).
        settings = app_settings(
            exported_repository, triton_url=triton.grpc_url, queue_size=1, max_inference_requests=64
        )
        async with running_app(settings) as (_, client):
            return await asyncio.gather(
                *(
                    client.post("/object-detection", files={"image": ("a.jpg", _jpeg(), None)})
                    for _ in range(12)
                )
            )

    replies = asyncio.run(check())
    statuses = sorted(reply.status_code for reply in replies)
    assert 200 in statuses and 503 in statuses, statuses
    assert set(statuses) <= {200, 503}
    for reply in replies:
        if reply.status_code == 503:
            assert int(reply.headers["retry-after"]) >= 1
            assert "queue is full" in reply.json()["detail"]


def test_missed_deadline_is_504(triton: LocalTriton, exported_repository: Path) -> None:
    async def check() -> httpx.Response:
        settings = app_settings(
            exported_repository, triton_url=triton.grpc_url, request_timeout_s=0.0005
        )
        async with running_app(settings) as (app, client):
            reply = await client.post(
                "/object-detection", files={"image": ("a.jpg", _jpeg(), "image/jpeg")}
            )
            assert app.state.services.batchers["yolos"].queued == 0
            return reply

    reply = asyncio.run(check())
    assert reply.status_code == 504
    assert "deadline" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"json": {"text": ""}}, 422, "at least 1 character"),
        ({"json": {"text": "   "}}, 422, "empty or only whitespace"),
        ({"json": {"text": "x" * 100_001}}, 422, "the limit is 100000"),
        ({"json": {"texts": ["a"] * 65}, "path": "/prediction/batch"}, 422, "at most 64"),
        ({"json": {"texts": []}, "path": "/prediction/batch"}, 422, "at least 1 item"),
        ({"json": {"wrong": "field"}}, 422, "Field required"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ],
)
def test_bad_text_input_is_a_4xx_with_a_message(
    triton: LocalTriton,
    exported_repository: Path,
    request_kwargs: dict[str, object],
    status: int,
    message: str,
) -> None:
    kwargs = dict(request_kwargs)
    path = str(kwargs.pop("path", "/prediction"))

    async def check() -> httpx.Response:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            return await client.post(path, **kwargs)  # type: ignore[arg-type]

    reply = asyncio.run(check())
    assert reply.status_code == status
    assert message in reply.text


def _truncated_jpeg() -> bytes:
    data = _jpeg(320, 240)
    return data[: len(data) // 2]


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("files", "params", "status", "message"),
    [
        ({"image": ("a.txt", b"hello, not an image", "text/plain")}, {}, 415, "content type"),
        ({"image": ("a.jpg", b"hello, not an image", "image/jpeg")}, {}, 415, "not a recognised"),
        ({"image": ("a.gif", _gif(), "application/octet-stream")}, {}, 415, "not a recognised"),
        ({"image": ("a.jpg", b"", "image/jpeg")}, {}, 415, "empty image"),
        ({"image": ("a.jpg", _truncated_jpeg(), "image/jpeg")}, {}, 422, "truncated"),
        ({"image": ("a.jpg", _jpeg(), "image/jpeg")}, {"threshold": 1.5}, 422, "less than or"),
        ({"other": ("a.jpg", _jpeg(), "image/jpeg")}, {}, 422, "Field required"),
    ],
)
def test_bad_uploads_are_4xx_with_a_message(
    triton: LocalTriton,
    exported_repository: Path,
    files: dict[str, tuple[str, bytes, str]],
    params: dict[str, float],
    status: int,
    message: str,
) -> None:
    async def check() -> httpx.Response:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            return await client.post("/object-detection", files=files, params=params)

    reply = asyncio.run(check())
    assert reply.status_code == status, reply.text
    assert message in reply.text


def test_oversized_upload_and_image_dimensions_are_413(
    triton: LocalTriton, exported_repository: Path
) -> None:
    async def check() -> tuple[httpx.Response, httpx.Response]:
        settings = app_settings(
            exported_repository,
            triton_url=triton.grpc_url,
            max_upload_bytes=50_000,
            max_image_pixels=100_000,
        )
        async with running_app(settings) as (_, client):
            noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(noise).save(buffer, format="PNG")
            big_file = await client.post(
                "/object-detection", files={"image": ("a.png", buffer.getvalue(), "image/png")}
            )
            big_image = await client.post(
                "/object-detection", files={"image": ("a.jpg", _jpeg(640, 480), "image/jpeg")}
            )
            return big_file, big_image

    big_file, big_image = asyncio.run(check())
    # Refused from its Content-Length, before it is read: the upload limit plus 16 KiB of framing.
    assert big_file.status_code == 413 and "over the limit of 66384 bytes" in big_file.text
    assert big_image.status_code == 413 and "too large" in big_image.text


def test_models_describe_interface_state_labels_and_provenance(
    triton: LocalTriton, exported_repository: Path
) -> None:
    async def check() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            return (
                await client.get("/models"),
                await client.get("/models/yolos"),
                await client.get("/models/nope"),
            )

    listing, yolos, missing = asyncio.run(check())
    assert listing.status_code == 200
    by_name = {model["name"]: model for model in listing.json()["models"]}
    assert set(by_name) == {"newsgroups", "yolos"}
    newsgroups = by_name["newsgroups"]
    assert newsgroups["ready"] and newsgroups["state"] == "READY"
    assert newsgroups["versions"] == ["1"]
    assert newsgroups["max_batch_size"] == 128
    assert newsgroups["labels"] == read_labels(exported_repository / "newsgroups")
    assert newsgroups["random_weights"] is False
    assert [t["name"] for t in newsgroups["inputs"]] == ["text"]
    body = yolos.json()
    assert body["random_weights"] is True
    assert body["provenance"]["weights"]["source"] == "random-init"
    assert [t["name"] for t in body["outputs"]] == ["logits", "pred_boxes"]
    assert len(body["labels"]) == 91
    assert missing.status_code == 404 and "newsgroups, yolos" in missing.json()["detail"]


def test_health_and_openapi_examples(triton: LocalTriton, exported_repository: Path) -> None:
    async def check() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url)
        async with running_app(settings) as (_, client):
            return (
                await client.get("/health/live"),
                await client.get("/health/ready"),
                await client.get("/openapi.json"),
            )

    live, ready, openapi = asyncio.run(check())
    assert live.json() == {"status": "alive"}
    assert ready.status_code == 200 and ready.json()["ready"] is True
    schemas = openapi.json()["components"]["schemas"]
    for name in ("PredictionInput", "PredictionOutput", "BatchPredictionInput", "DetectionOutput"):
        assert schemas[name].get("examples"), f"{name} has no example in /docs"
    paths = openapi.json()["paths"]
    assert {"/prediction", "/prediction/batch", "/object-detection", "/models"} <= set(paths)


def test_in_process_onnxruntime_backend_serves_without_triton(exported_repository: Path) -> None:
    async def check() -> tuple[httpx.Response, httpx.Response]:
        settings = app_settings(exported_repository, inference_backend="onnxruntime")
        async with running_app(settings) as (_, client):
            return (
                await client.post("/prediction", json={"text": TEXTS[0]}),
                await client.get("/health/ready"),
            )

    prediction, ready = asyncio.run(check())
    assert prediction.status_code == 200 and prediction.json()["model_version"] == "1"
    assert ready.status_code == 200
