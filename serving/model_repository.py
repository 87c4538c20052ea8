"""File layout of a Triton model repository as TritonGate writes and reads it.

::

    <repository>/<name>/config.pbtxt          committed (GPU deployment)
    <repository>/<name>/configs/cpu.pbtxt     committed (local CPU run)
    <repository>/<name>/labels.txt            generated: one class name per line, by class id
    <repository>/<name>/<v>/model.onnx        generated
    <repository>/<name>/<v>/provenance.json   generated: weights' origin, metrics, parity
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_FILENAME = "model.onnx"
LABELS_FILENAME = "labels.txt"
PROVENANCE_FILENAME = "provenance.json"


def model_versions(model_dir: Path) -> list[int]:
    """Versions present on disk that hold a model file, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in model_dir.iterdir()
        if child.is_dir() and child.name.isdigit() and (child / MODEL_FILENAME).exists()
    )


def read_labels(model_dir: Path) -> list[str]:
    return (model_dir / LABELS_FILENAME).read_text(encoding="utf-8").splitlines()


def read_provenance(model_dir: Path, version: int) -> dict[str, Any]:
    return json.loads((model_dir / str(version) / PROVENANCE_FILENAME).read_text(encoding="utf-8"))
