"""The inputs every target of a run receives: the same documents and the same photos.

* Texts: documents of the 20 Newsgroups *test* split the model was evaluated on (the export's
  own ``fetch_20newsgroups`` call, read from scikit-learn's cache in the export's data home), in
  the order that call returns them, first ``count``. Where the cache is absent (a machine that
  only runs remote benchmarks), a fixed set of short posts covering the four categories.
* Images: the shared photos (``TRITONGATE_IMAGES_DIR``: ``photos/*.jpg``, ``coco/*``), or
  generated sample images where none are configured.

Each comes with a ``source`` description that goes into the report.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from benchmarks.payloads import FilePart
from serving.detection import decode_image, preprocess
from serving.model_repository import model_versions
from serving.settings import ServingSettings
from serving.specs import NEWSGROUPS_CATEGORIES
from serving.text import text_inputs

DEFAULT_TEXT_COUNT: Final = 256
RANDOM_STATE: Final = 0  # the export's fetch_20newsgroups(..., random_state=0)

# Used only without the dataset cache: short posts in the style of the four categories.
FALLBACK_TEXTS: Final = (
    "My Mac IIsi needs more RAM; does the PowerBook take the same SIMMs?",
    "The Quadra's SCSI drive is not recognised after the System 7.1 upgrade.",
    "Is the Apple 13-inch monitor compatible with the Centris video card?",
    "Selling an external 40 MB hard drive for the Macintosh SE, barely used.",
    "The Clipper chip's key escrow lets the government read encrypted calls.",
    "RSA public-key encryption with a 1024-bit modulus should be safe for years.",
    "PGP signatures and the web of trust: how do I verify a key fingerprint?",
    "The NSA's involvement in the DES S-box design is still debated.",
    "Christ's resurrection is the centre of the Christian faith and our hope.",
    "Our church prays for the sick every Sunday; scripture tells us to.",
    "What does the Bible say about baptism of infants versus believers?",
    "Grace through faith, not works: Paul's letter to the Romans explains it.",
    "The Branch Davidians in Waco and what cults have in common.",
    "Atheists can have morality without religion; the debate goes on.",
    "Koresh claimed to be a prophet; was the siege handled well?",
    "Objective morality and religious belief: a reply to the last post.",
)


@dataclass(frozen=True)
class TextInputs:
    texts: tuple[str, ...]
    source: dict[str, Any]

    def json_payloads(self) -> list[dict[str, str]]:
        """Bodies of ``POST /prediction``."""
        return [{"text": text} for text in self.texts]

    def tensors(self) -> list[dict[str, np.ndarray]]:
        """Triton's ``text`` input for each document, batch dimension 1."""
        return [text_inputs([text]) for text in self.texts]


@dataclass(frozen=True)
class ImageInputs:
    files: tuple[FilePart, ...]
    source: dict[str, Any]

    def tensors(self) -> list[dict[str, np.ndarray]]:
        """YOLOS's inputs for each image (decoded and resized: uint8 ``pixels`` and
        ``content_size``), batch dimension 1."""
        return [preprocess(decode_image(part.content)) for part in self.files]


def _read_provenance(repository: Path, model: str) -> dict[str, Any]:
    versions = model_versions(repository / model)
    if not versions:
        return {}
    path = repository / model / str(versions[-1]) / "provenance.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def resolve_recorded_path(recorded: str | None, repository: Path) -> Path | None:
    """A path written in a provenance file: absolute, or relative to where the export ran.

    The export runs from the project root (``tritongate export``, ``make``), so a relative
    path is tried against the current directory and then beside the repository.
    """
    if not recorded:
        return None
    path = Path(recorded)
    if path.is_absolute():
        return path
    for base in (Path.cwd(), repository.resolve().parent):
        if (base / path).exists():
            return base / path
    return path


def export_data_home(repository: Path) -> Path | None:
    """The dataset cache directory the newsgroups export used (from its provenance)."""
    dataset = _read_provenance(repository, "newsgroups").get("dataset", {})
    return resolve_recorded_path(dataset.get("data_home"), repository)


def export_joblib(repository: Path) -> Path | None:
    """The book's ``(pipeline, target_names)`` joblib file written by the newsgroups export."""
    artifacts = _read_provenance(repository, "newsgroups").get("artifacts", {})
    return resolve_recorded_path(artifacts.get("joblib_model"), repository)


def yolos_weights_provenance(repository: Path) -> dict[str, Any]:
    """Where the exported YOLOS weights came from (the ``weights`` entry of its provenance)."""
    return dict(_read_provenance(repository, "yolos").get("weights", {}))


def _describe_texts(texts: Sequence[str]) -> dict[str, Any]:
    lengths = [len(text) for text in texts]
    return {
        "count": len(texts),
        "chars_mean": round(statistics.fmean(lengths), 1),
        "chars_median": statistics.median(lengths),
        "chars_max": max(lengths),
        "sha256": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
    }


def newsgroups_texts(data_home: Path | None, count: int = DEFAULT_TEXT_COUNT) -> TextInputs:
    """The first ``count`` test documents, or :data:`FALLBACK_TEXTS` without the cache."""
    if data_home is not None and data_home.is_dir():
        try:
            from sklearn.datasets import fetch_20newsgroups

            test = fetch_20newsgroups(
                subset="test",
                categories=list(NEWSGROUPS_CATEGORIES),
                random_state=RANDOM_STATE,
                data_home=str(data_home),
                download_if_missing=False,
            )
        except (OSError, ImportError):
            pass
        else:
            texts = tuple(str(text) for text in test.data[:count])
            source = {
                "kind": "20newsgroups-test",
                "loader": "fetch_20newsgroups(subset='test', categories=<4>, random_state=0)",
                "data_home": str(data_home),
            }
            return TextInputs(texts, source | _describe_texts(texts))
    texts = FALLBACK_TEXTS
    source = {"kind": "built-in", "note": "20 Newsgroups cache not found: short built-in posts"}
    return TextInputs(texts, source | _describe_texts(texts))


def detection_images(images_dir: Path | None, scratch: Path) -> ImageInputs:
    """The shared photos under ``images_dir``, or generated sample images."""
    paths = ServingSettings(images_dir=images_dir).parity_images() if images_dir else []
    source: dict[str, Any]
    if paths:
        source = {"kind": "shared-photos", "directory": str(images_dir)}
    else:
        from export.sample_images import write_sample_images

        paths = write_sample_images(scratch / "sample-images")
        source = {"kind": "generated", "note": "no TRITONGATE_IMAGES_DIR: generated images"}
    files = []
    described = []
    for path in paths:
        content = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        files.append(FilePart(path.name, content, content_type))
        width, height = decode_image(content).size
        described.append({"name": path.name, "bytes": len(content), "size": [width, height]})
    return ImageInputs(tuple(files), source | {"count": len(files), "images": described})
