"""Baseline servers run by benchmarks.servers, measured by benchmarks.loadgen.

The no-op app gives the API stack's own ceiling (what the generator can push through FastAPI +
uvicorn), the raw no-op server the generator's own; the book app is checked against its public
contract with a tiny pipeline and a tiny YOLOS trained or built here.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest

from benchmarks import loadgen
from benchmarks.baselines.book_app import JOBLIB_ENV, YOLOS_DIR_ENV
from benchmarks.payloads import FilePart, post_json, post_multipart
from benchmarks.servers import ServerStartError, raw_noop_server, uvicorn_server

CATEGORIES = ["comp.sys.mac.hardware", "sci.crypt", "soc.religion.christian", "talk.religion.misc"]
TRAINING = {
    "comp.sys.mac.hardware": ["my mac powerbook needs more ram", "apple scsi drive and monitor"],
    "sci.crypt": ["the clipper chip encryption key escrow", "rsa public key cipher security"],
    "soc.religion.christian": ["church prayer and the bible", "jesus christ faith in god"],
    "talk.religion.misc": ["koresh cult in waco", "atheism morality and religion debate"],
}


@pytest.fixture(scope="module")
def book_joblib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book's ``(pipeline, target_names)`` joblib file, trained on a few strings."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    texts = [text for category in CATEGORIES for text in TRAINING[category]]
    targets = [index for index, category in enumerate(CATEGORIES) for _ in TRAINING[category]]
    model = make_pipeline(TfidfVectorizer(), MultinomialNB())
    model.fit(texts, targets)
    path = tmp_path_factory.mktemp("book") / "newsgroups_model.joblib"
    joblib.dump((model, CATEGORIES), path)
    return path


@pytest.fixture(scope="module")
def tiny_yolos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random YOLOS (``save_pretrained``) whose class head always says "person"."""
    import torch
    from transformers import YolosForObjectDetection, YolosImageProcessor

    from export.yolos_weights import yolos_tiny_config

    torch.manual_seed(0)
    model = YolosForObjectDetection(yolos_tiny_config(tiny=True))
    last = model.class_labels_classifier.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[1] = 12.0  # COCO id 1: every detection token is a confident "person"
    directory = tmp_path_factory.mktemp("yolos")
    model.save_pretrained(directory)
    YolosImageProcessor(size={"shortest_edge": 128, "longest_edge": 256}).save_pretrained(directory)
    return directory


def jpeg(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("concurrency", [16, 64])
def test_generator_ceiling_against_the_noop_app(concurrency: int) -> None:
    with uvicorn_server("benchmarks.baselines.noop_app:app") as server:
        result = loadgen.measure_generator_ceiling(
            server.url, concurrency=concurrency, duration=2.0, warmup=0.5
        )
        reply = httpx.post(f"{server.url}/prediction", json={"text": "anything"})
        threaded = httpx.post(f"{server.url}/prediction-threadpool", json={"text": "anything"})
    print(
        f"\nnoop_app (1 uvicorn worker), {concurrency} clients: "
        f"{result.throughput_rps:,.0f} req/s, p50 {result.latency.p50_ms:.2f} ms, "
        f"p99 {result.latency.p99_ms:.2f} ms, generator CPU {result.generator_cpu:.0%}"
    )
    assert reply.json() == threaded.json() == {"category": "noop"}
    assert result.errors == 0 and result.succeeded > 0
    assert result.throughput_rps > 1000  # thousands of requests per second on this stack
    assert result.connections_opened == concurrency  # keep-alive held for the whole run


def test_generator_ceiling_against_the_raw_noop_server() -> None:
    with raw_noop_server() as server:
        result = loadgen.measure_generator_ceiling(server.url, concurrency=16, duration=2.0)
    print(
        f"\nraw_noop, 16 clients: {result.throughput_rps:,.0f} req/s, "
        f"generator CPU {result.generator_cpu:.0%}"
    )
    assert result.errors == 0 and result.throughput_rps > 2000


def test_book_app_serves_the_books_prediction_contract(book_joblib: Path) -> None:
    with uvicorn_server(
        "benchmarks.baselines.book_app:create_app",
        factory=True,
        env={JOBLIB_ENV: str(book_joblib), YOLOS_DIR_ENV: ""},
    ) as server:
        reply = httpx.post(
            f"{server.url}/prediction", json={"text": "the encryption key and the cipher"}
        )
        invalid = httpx.post(f"{server.url}/prediction", json={"txt": "no"})
        detection = httpx.post(f"{server.url}/object-detection", files={"image": b"x"})
        texts = [{"text": text} for category in CATEGORIES for text in TRAINING[category]]
        result = loadgen.run(
            loadgen.closed_loop(
                server.url, post_json("/prediction", texts), concurrency=4, requests=80
            )
        )
        log = server.log_tail()
    assert reply.status_code == 200 and reply.json() == {"category": "sci.crypt"}
    assert invalid.status_code == 422
    assert detection.status_code == 404
    assert "POST /object-detection is not served" in log
    assert result.status_counts == {200: 80}


def test_book_app_serves_object_detection_with_pytorch_yolos(
    book_joblib: Path, tiny_yolos_dir: Path
) -> None:
    image = jpeg(160, 120)
    with uvicorn_server(
        "benchmarks.baselines.book_app:create_app",
        factory=True,
        env={JOBLIB_ENV: str(book_joblib), YOLOS_DIR_ENV: str(tiny_yolos_dir)},
        startup_timeout=120,
    ) as server:
        reply = httpx.post(
            f"{server.url}/object-detection",
            files={"image": ("photo.jpg", image, "image/jpeg")},
            timeout=60,
        )
        result = loadgen.run(
            loadgen.closed_loop(
                server.url,
                post_multipart("/object-detection", [FilePart("a.jpg", image, "image/jpeg")]),
                concurrency=2,
                requests=6,
            )
        )
    assert reply.status_code == 200
    objects = reply.json()["objects"]
    assert len(objects) == 100  # every detection token is a confident person here
    for found in objects:
        assert found["label"] == "person"
        x1, y1, x2, y2 = found["box"]
        assert -1 <= x1 <= x2 <= 161 and -1 <= y1 <= y2 <= 121  # pixels of the 160 x 120 image
    assert result.status_counts == {200: 6}


def test_start_failure_reports_the_servers_log(tmp_path: Path) -> None:
    missing = tmp_path / "absent.joblib"
    server = uvicorn_server(
        "benchmarks.baselines.book_app:create_app",
        factory=True,
        env={JOBLIB_ENV: str(missing)},
        log_path=tmp_path / "server.log",
    )
    with pytest.raises(ServerStartError, match=r"absent\.joblib"):
        server.start()
    assert "Application startup failed" in (tmp_path / "server.log").read_text()


def _live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies awaiting a reaper are not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])  # after "pid (comm)": state, ppid, pgrp
        if pgrp == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def test_stop_ends_every_worker() -> None:
    server = uvicorn_server("benchmarks.baselines.noop_app:app", workers=2)
    server.start()
    pid = server.pid
    assert pid is not None
    assert len(_live_group_members(pid)) >= 3  # supervisor and two workers
    assert httpx.get(f"{server.url}/noop").json() == {"ok": True}
    server.stop()
    deadline = time.monotonic() + 5
    while _live_group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILLed stragglers may take a moment to die
    assert _live_group_members(pid) == []
