"""Test-split metrics of the newsgroups classifier and the files that report them.

:func:`evaluate` computes the metrics (accuracy, confusion matrix, per-class figures);
:func:`save_reports` writes ``metrics.json``, a confusion-matrix PNG and the book's joblib
artifact ``(pipeline, target_names)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import joblib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch

METRICS_FILENAME: Final = "metrics.json"
CONFUSION_PLOT_FILENAME: Final = "confusion_matrix.png"
JOBLIB_FILENAME: Final = "newsgroups_model.joblib"  # the book's file name


def evaluate(pipeline: Pipeline, test: Bunch, target_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows: true class, columns: predicted) and per-class figures."""
    labels = list(target_names)
    class_ids = list(range(len(labels)))
    predicted = pipeline.predict(test.data)
    matrix = confusion_matrix(test.target, predicted, labels=class_ids)
    report = classification_report(
        test.target,
        predicted,
        labels=class_ids,
        target_names=labels,
        output_dict=True,
        zero_division=0,
    )
    return {
        "accuracy": float(accuracy_score(test.target, predicted)),
        "labels": labels,
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_axes": {"rows": "true", "columns": "predicted"},
        "test_documents": len(test.data),
        "correct": int(np.trace(matrix)),
        "support": dict(zip(labels, (int(n) for n in matrix.sum(axis=1)), strict=True)),
        "predicted": dict(zip(labels, (int(n) for n in matrix.sum(axis=0)), strict=True)),
        "per_class": {
            label: {key: float(value) for key, value in report[label].items()} for label in labels
        },
    }


def format_confusion_matrix(metrics: Mapping[str, Any]) -> str:
    """A plain-text table of the confusion matrix: rows true class, columns predicted class."""
    labels: list[str] = metrics["labels"]
    matrix: list[list[int]] = metrics["confusion_matrix"]
    corner = "true \\ predicted"
    row_names = [f"[{i}] {label}" for i, label in enumerate(labels)]
    column_names = [f"[{i}]" for i in range(len(labels))]
    first = max(len(corner), *(len(name) for name in row_names))
    cell = max(5, *(len(str(n)) for row in matrix for n in row))
    lines = [corner.ljust(first) + "".join(f" {name:>{cell}}" for name in column_names)]
    for name, row in zip(row_names, matrix, strict=True):
        lines.append(name.ljust(first) + "".join(f" {n:>{cell}}" for n in row))
    return "\n".join(lines)


def _plot_confusion_matrix(metrics: Mapping[str, Any], path: Path) -> None:
    labels: list[str] = metrics["labels"]
    matrix = np.asarray(metrics["confusion_matrix"])
    figure = Figure(figsize=(7, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=30, ha="right")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(f"20 Newsgroups test split: accuracy {metrics['accuracy']:.4f}")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        color = "white" if value > threshold else "black"
        axes.text(column, row, str(value), ha="center", va="center", color=color)
    figure.savefig(path, format="png", dpi=100)


@dataclass(frozen=True)
class ReportFiles:
    """The files :func:`save_reports` wrote."""

    metrics: Path
    confusion_plot: Path
    joblib_model: Path


def save_reports(
    metrics: Mapping[str, Any], artifacts_dir: Path, pipeline: Pipeline
) -> ReportFiles:
    """Write ``metrics.json``, the confusion-matrix PNG and the book's joblib artifact
    ``(pipeline, target_names)`` (target names: ``metrics["labels"]``) into ``artifacts_dir``."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        metrics=artifacts_dir / METRICS_FILENAME,
        confusion_plot=artifacts_dir / CONFUSION_PLOT_FILENAME,
        joblib_model=artifacts_dir / JOBLIB_FILENAME,
    )
    files.metrics.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _plot_confusion_matrix(metrics, files.confusion_plot)
    joblib.dump((pipeline, [str(label) for label in metrics["labels"]]), files.joblib_model)
    return files
