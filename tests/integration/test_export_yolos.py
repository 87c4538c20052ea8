"""The YOLOS export end to end: tiny random-init weights, optimum-onnx, the parity gate on photos,
and the model written into a copy of the committed model repository. Offline throughout."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/huggingface_hub are imported

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

import onnxruntime as ort
import torch

from export.errors import DataUnavailableError, ExportError, ParityError
from export.repository import ExportedModel, validate_model_dir
from export.yolos import export_yolos
from export.yolos_parity import BOX_TOLERANCE_PX, SCORE_TOLERANCE, check_parity
from export.yolos_preprocessing import normalised_like_processor
from export.yolos_weights import COCO_ID2LABEL, RANDOM_WEIGHTS_NOTE, load_yolos
from serving.detection import decode_image, preprocess_batch
from serving.model_repository import model_versions, read_labels, read_provenance
from serving.specs import YOLOS
from tests.stack import copy_committed_configs

SEED = 7
ABSENT_HUB_ID = "tritongate-tests/no-such-yolos"


# --- photos ------------------------------------------------------------------------------------


def _synthetic_photo(width: int, height: int, seed: int) -> Image.Image:
    """A gradient with a few filled shapes: varied enough for the detector to tell queries apart."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    tint = rng.uniform(0.2, 1.0, size=(1, 1, 3))
    base = (255 * np.clip(0.6 * x * tint + 0.4 * y * tint[..., ::-1], 0, 1)).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, width * 3 // 4), rng.integers(0, height * 3 // 4)
        x1 = x0 + rng.integers(width // 10, width // 3)
        y1 = y0 + rng.integers(height // 10, height // 3)
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    return image


def _write_synthetic_photos(directory: Path) -> list[Path]:
    """JPEGs in several shapes; one stored sideways with an EXIF orientation tag."""
    paths = []
    for index, (width, height) in enumerate([(640, 480), (1024, 576), (360, 540), (250, 250)]):
        path = directory / f"synthetic-{index}-{width}x{height}.jpg"
        _synthetic_photo(width, height, seed=index).save(path, quality=90)
        paths.append(path)
    sideways = directory / "synthetic-exif-rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _synthetic_photo(480, 320, seed=9).save(sideways, quality=90, exif=exif)
    paths.append(sideways)
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photos from TRITONGATE_IMAGES_DIR (photos/ and coco/), else synthetic JPEGs."""
    images_dir = os.environ.get("TRITONGATE_IMAGES_DIR")
    if images_dir and Path(images_dir).is_dir():
        found = sorted(Path(images_dir, "photos").glob("*.jpg"))
        found += sorted(Path(images_dir, "coco").glob("*.jpg"))
        if found:
            return found
    return _write_synthetic_photos(tmp_path_factory.mktemp("photos"))


# --- the export, once per module ---------------------------------------------------------------


def _repository_copy(root: Path) -> Path:
    """A model repository holding only the committed yolos configs."""
    return copy_committed_configs(root / "repo", models=("yolos",))


@dataclass
class Export:
    repository: Path
    result: ExportedModel
    log: list[str]


class Log:
    """Prints each line (visible with -s) and keeps it for assertions."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        print(line)
        self.lines.append(line)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Export:
    repository = _repository_copy(tmp_path_factory.mktemp("export"))
    log = Log()
    result = export_yolos(
        repository,
        weights="random-init",
        random_init_seed=SEED,
        tiny=True,
        images=photos,
        log=log,
    )
    return Export(repository, result, log.lines)


@pytest.fixture(scope="module")
def reference_model() -> torch.nn.Module:
    model, _ = load_yolos("random-init", random_init_seed=SEED, tiny=True)
    return model


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """HF offline mode, also when huggingface_hub was imported before the env var was set."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    yield


# --- the written model -------------------------------------------------------------------------


def test_export_writes_model_labels_and_provenance(exported: Export) -> None:
    model_dir = exported.repository / "yolos"
    assert exported.result.model_path == model_dir / "1" / "model.onnx"
    assert exported.result.model_path.stat().st_size > 100_000
    assert model_versions(model_dir) == [1]
    labels = read_labels(model_dir)
    assert len(labels) == 91
    assert labels[0] == "N/A" and labels[1] == "person" and labels[90] == "toothbrush"
    assert labels == [COCO_ID2LABEL[index] for index in range(91)]
    # write_model validated already; validating again proves the files on disk are consistent.
    validate_model_dir(model_dir, YOLOS, 1)


def test_provenance_records_random_weights_loudly(exported: Export) -> None:
    provenance = read_provenance(exported.repository / "yolos", 1)
    weights = provenance["weights"]
    assert weights["source"] == "random-init"
    assert weights["seed"] == SEED
    assert weights["tiny"] is True
    assert weights["config"]["num_detection_tokens"] == 100
    assert weights["config"]["num_labels"] == 91
    assert provenance["random_weights"] is True
    assert provenance["note"] == RANDOM_WEIGHTS_NOTE
    assert provenance["input"]["height"] == 480 and provenance["input"]["width"] == 640
    assert provenance["versions"]["torch"] and provenance["versions"]["transformers"]
    assert provenance["versions"]["onnxruntime"] and provenance["versions"]["optimum"]
    assert provenance["exported_at"]
    pytorch_check = provenance["onnx"]["pytorch_check"]
    assert max(pytorch_check["max_abs_diff"].values()) <= 1e-4
    # The in-graph normalisation reproduces the processor's arithmetic bit for bit.
    assert set(pytorch_check["input_max_abs_diff"]) == {"1", "8"}
    assert max(pytorch_check["input_max_abs_diff"].values()) == 0.0
    assert provenance["input"]["tensors"] == {"pixels": "TYPE_UINT8", "content_size": "TYPE_INT32"}
    assert "inside the graph" in provenance["input"]["preprocessing"]
    assert any("random weights" in line for line in exported.log)


def test_parity_figures_within_tolerance_and_printed(exported: Export, photos: list[Path]) -> None:
    parity = read_provenance(exported.repository / "yolos", 1)["parity"]
    assert parity["passed"] is True
    assert parity["images"] == len(photos)
    assert parity["max_box_diff_px"] <= BOX_TOLERANCE_PX
    assert parity["max_score_diff"] <= SCORE_TOLERANCE
    # The graph's own normalisation (uint8 in) is bit-identical to transformers' processor.
    assert parity["max_input_abs_diff"] == 0.0
    assert parity["label_mismatches"] == 0
    for item in parity["per_image"]:
        assert item["detections_compared"] >= 1, item
    assert any(line.startswith("[yolos] parity overall") for line in exported.log)
    for path in photos:
        assert any(path.name in line and "max box diff" in line for line in exported.log)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_pytorch_on_photos(
    exported: Export, reference_model: torch.nn.Module, photos: list[Path], batch: int
) -> None:
    chosen = [photos[index % len(photos)] for index in range(batch)]
    inputs = preprocess_batch([decode_image(path.read_bytes()) for path in chosen])
    session = ort.InferenceSession(
        str(exported.result.model_path), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == [spec.name for spec in YOLOS.inputs]
    logits, boxes = session.run(["logits", "pred_boxes"], inputs)
    pixel_values = normalised_like_processor(inputs["pixels"], inputs["content_size"])
    with torch.no_grad():
        expected = reference_model(pixel_values=torch.from_numpy(pixel_values))
    assert logits.shape == (batch, 100, 92)
    assert boxes.shape == (batch, 100, 4)
    np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(boxes, expected.pred_boxes.numpy(), rtol=0, atol=1e-4)


def test_parity_gate_rejects_a_different_model(exported: Export, photos: list[Path]) -> None:
    other, _ = load_yolos("random-init", random_init_seed=SEED + 1, tiny=True)
    with pytest.raises(ParityError, match="labelled"):
        check_parity(other, exported.result.model_path, photos[:2], log=lambda _line: None)


def test_parity_gate_rejects_an_empty_comparison(exported: Export, photos: list[Path]) -> None:
    model, _ = load_yolos("random-init", random_init_seed=SEED, tiny=True)
    with pytest.raises(ParityError, match="nothing was compared"):
        check_parity(model, exported.result.model_path, photos[:1], threshold=0.9, log=print)


# --- weights sources and the offline paths -----------------------------------------------------


def test_export_refuses_to_run_without_photos(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="parity gate"):
        export_yolos(_repository_copy(tmp_path), weights="random-init", tiny=True, images=[])


@pytest.mark.usefixtures("hub_offline")
def test_hub_id_offline_raises_a_helpful_error(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError) as caught:
        load_yolos("hustvl/yolos-tiny", random_init_seed=None, tiny=False, cache_dir=tmp_path)
    message = str(caught.value)
    assert "hustvl/yolos-tiny" in message
    assert "HF_HUB_OFFLINE" in message
    assert "local directory" in message
    assert "'random-init'" in message


@pytest.mark.usefixtures("hub_offline")
def test_offline_fallback_to_random_init_is_recorded(tmp_path: Path, photos: list[Path]) -> None:
    repository = _repository_copy(tmp_path)
    log = Log()
    with pytest.raises(DataUnavailableError):
        export_yolos(repository, weights=ABSENT_HUB_ID, tiny=True, images=photos[:1], log=log)
    result = export_yolos(
        repository,
        weights=ABSENT_HUB_ID,
        random_init_seed=3,
        tiny=True,
        images=photos[:2],
        offline_fallback_random_init=True,
        log=log,
    )
    provenance = json.loads(result.provenance_path.read_text())
    weights = provenance["weights"]
    assert weights["source"] == "random-init"
    assert weights["seed"] == 3
    assert weights["fallback_from"] == ABSENT_HUB_ID
    assert "HF_HUB_OFFLINE" in weights["fallback_reason"]
    assert provenance["note"] == RANDOM_WEIGHTS_NOTE
    assert any("FALLING BACK TO RANDOM-INIT" in line for line in log.lines)


def _fake_hub_cache(cache_dir: Path, hub_id: str, revision: str, model: torch.nn.Module) -> Path:
    """The layout huggingface_hub leaves after a download: snapshots/<revision> + refs/main."""
    repo_dir = cache_dir / ("models--" + hub_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    model.save_pretrained(snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


@pytest.mark.usefixtures("hub_offline")
def test_hub_id_found_in_the_local_cache_records_its_revision(
    tmp_path: Path, reference_model: torch.nn.Module
) -> None:
    revision = "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_cache(tmp_path, "hustvl/yolos-tiny", revision, reference_model)
    model, provenance = load_yolos(
        "hustvl/yolos-tiny", random_init_seed=None, tiny=False, cache_dir=tmp_path
    )
    assert provenance["source"] == "hub"
    assert provenance["hub_id"] == "hustvl/yolos-tiny"
    assert provenance["revision"] == revision
    assert provenance["from_local_cache"] is True
    assert "note" not in provenance
    for name, value in reference_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_local_directory_weights(tmp_path: Path, reference_model: torch.nn.Module) -> None:
    reference_model.save_pretrained(tmp_path / "weights")
    model, provenance = load_yolos(str(tmp_path / "weights"), random_init_seed=None, tiny=False)
    assert provenance["source"] == "local"
    assert provenance["local_path"] == str((tmp_path / "weights").resolve())
    assert set(provenance["weights_sha256"]) == {"model.safetensors"}
    assert not model.training
    inputs = preprocess_batch([Image.new("RGB", (64, 48), (1, 2, 3))])
    pixels = torch.from_numpy(normalised_like_processor(inputs["pixels"], inputs["content_size"]))
    with torch.no_grad():
        np.testing.assert_array_equal(
            model(pixel_values=pixels).logits.numpy(),
            reference_model(pixel_values=pixels).logits.numpy(),
        )


def test_missing_local_directory_is_data_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_yolos(str(tmp_path / "nowhere"), random_init_seed=None, tiny=False)


def test_photo_fixture_images_decode(photos: list[Path]) -> None:
    for path in photos:
        assert decode_image(path.read_bytes()).mode == "RGB"
