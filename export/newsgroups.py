"""Export of the book's 20 Newsgroups classifier into the Triton model repository.

The model is the book's (chapter 11/12): ``make_pipeline(TfidfVectorizer(), MultinomialNB())``
trained on four categories of the "bydate" split. :func:`export_newsgroups` loads the data
(:mod:`export.newsgroups_data`), trains the pipeline, evaluates it on the test split and writes
reports and the book's joblib artifact (:mod:`export.newsgroups_reports`), converts the pipeline
to ONNX with skl2onnx (:func:`to_onnx`), gates the conversion on parity with scikit-learn over
the whole test split (:mod:`export.newsgroups_parity`), and writes ``model.onnx``,
``labels.txt`` and ``provenance.json`` with :func:`export.repository.write_model`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnx
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils import Bunch

from export.errors import ExportError
from export.newsgroups_data import (
    DATASET_NAME,
    RANDOM_STATE,
    NewsgroupsData,
    fetch_newsgroups_data,
)
from export.newsgroups_parity import check_parity, format_parity
from export.newsgroups_reports import ReportFiles, evaluate, format_confusion_matrix, save_reports
from export.provenance import package_versions, utc_timestamp
from export.repository import ExportedModel, check_onnx_against_spec, write_model
from serving.specs import NEWSGROUPS, NEWSGROUPS_CATEGORIES

# ONNX opset 17 runs on every ONNX Runtime >= 1.13, so also on the ONNX Runtime backend of
# NVIDIA's Triton images; skl2onnx 1.20's default (opset 22) needs ONNX Runtime >= 1.20.
TARGET_OPSET: Final = 17
# skl2onnx's tokenizer needs a locale that exists everywhere ("en_US.UTF-8" often does not).
TOKENIZER_LOCALE: Final = "C.UTF-8"

REPORTED_LIBRARIES: Final = (
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "scipy",
    "joblib",
)


def train_pipeline(train: Bunch) -> Pipeline:
    """The book's model: TF-IDF then multinomial naive Bayes, default parameters."""
    model = make_pipeline(TfidfVectorizer(), MultinomialNB())
    model.fit(train.data, train.target)
    return model


def to_onnx(pipeline: Pipeline, n_classes: int) -> onnx.ModelProto:
    """Convert the fitted pipeline; tensors named and typed as :data:`serving.specs.NEWSGROUPS`.

    Input ``text``: strings ``[batch, 1]``; outputs ``label`` (int64 ``[batch]``, the class id)
    and ``probabilities`` (float32 ``[batch, n_classes]``).
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    vectorizer, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    classes = np.asarray(classifier.classes_)
    if len(classes) != n_classes or not np.array_equal(classes, np.arange(n_classes)):
        raise ExportError(
            f"the classifier's classes are {classes.tolist()}, expected ids 0..{n_classes - 1}"
        )
    model = convert_sklearn(
        pipeline,
        name=NEWSGROUPS.name,
        initial_types=[("text", StringTensorType([None, 1]))],
        final_types=[
            ("label", Int64TensorType([None])),
            ("probabilities", FloatTensorType([None, n_classes])),
        ],
        options={
            id(classifier): {"zipmap": False},
            id(vectorizer): {"locale": TOKENIZER_LOCALE},
        },
        target_opset=TARGET_OPSET,
    )
    check_onnx_against_spec(model, NEWSGROUPS)
    return model


def _provenance(
    data: NewsgroupsData,
    target_names: list[str],
    metrics: Mapping[str, Any],
    parity: Mapping[str, Any],
    reports: ReportFiles,
    model: onnx.ModelProto,
) -> dict[str, Any]:
    return {
        "model": {
            "name": NEWSGROUPS.name,
            "kind": "scikit-learn pipeline converted with skl2onnx",
            "pipeline": "make_pipeline(TfidfVectorizer(), MultinomialNB())",
            "labels": target_names,
            "onnx_opsets": {
                entry.domain or "ai.onnx": entry.version for entry in model.opset_import
            },
            "tokenizer_locale": TOKENIZER_LOCALE,
        },
        "dataset": {
            "name": DATASET_NAME,
            "loader": (
                f"sklearn.datasets.fetch_20newsgroups(categories=..., random_state={RANDOM_STATE})"
            ),
            "categories": list(NEWSGROUPS_CATEGORIES),
            "train_documents": len(data.train.data),
            "test_documents": len(data.test.data),
            **data.source,
        },
        "metrics": {
            "accuracy": metrics["accuracy"],
            "labels": metrics["labels"],
            "confusion_matrix": metrics["confusion_matrix"],
            "confusion_matrix_axes": metrics["confusion_matrix_axes"],
        },
        "parity": dict(parity),
        "artifacts": {name: str(path) for name, path in asdict(reports).items()},
        "libraries": package_versions(REPORTED_LIBRARIES),
        "exported_at": utc_timestamp(),
    }


def export_newsgroups(
    repository: Path,
    *,
    archive: Path | None,
    data_home: Path,
    artifacts_dir: Path,
    version: int = 1,
    log: Callable[[str], None] = print,
) -> ExportedModel:
    """Train, evaluate, convert and parity-check the book's classifier; write it to ``repository``.

    ``archive``: a local ``20news-bydate.tar.gz`` (None: sklearn's cache or a download);
    ``data_home``: sklearn's dataset cache directory; ``artifacts_dir``: metrics, plot and the
    book's joblib file. Raises :class:`DataUnavailableError` without data and
    :class:`ParityError` when the ONNX model disagrees with scikit-learn.
    """

    def step(number: int, text: str) -> None:
        log(f"[newsgroups {number}/7] {text}")

    step(1, "loading 20 Newsgroups with sklearn.datasets.fetch_20newsgroups")
    data = fetch_newsgroups_data(archive=archive, data_home=data_home, log=log)
    target_names = [str(name) for name in data.train.target_names]
    log(f"train {len(data.train.data)} / test {len(data.test.data)} documents, {target_names}")

    step(2, "training make_pipeline(TfidfVectorizer(), MultinomialNB())")
    started = time.perf_counter()
    pipeline = train_pipeline(data.train)
    log(f"trained in {time.perf_counter() - started:.1f} s")

    step(3, "evaluating on the test split")
    metrics = {
        **evaluate(pipeline, data.test, target_names),
        "train_documents": len(data.train.data),
    }
    log(f"accuracy {metrics['accuracy']:.4f} ({metrics['correct']}/{metrics['test_documents']})")
    log(format_confusion_matrix(metrics))

    step(4, f"writing reports and the joblib model into {artifacts_dir}")
    reports = save_reports(metrics, artifacts_dir, pipeline)
    log(f"wrote {reports.metrics}, {reports.confusion_plot}, {reports.joblib_model}")

    step(5, f"converting to ONNX with skl2onnx (opset {TARGET_OPSET})")
    model = to_onnx(pipeline, len(target_names))
    log(f"ONNX model {model.ByteSize() / 1e6:.2f} MB, tensors match serving.specs.NEWSGROUPS")

    step(6, "parity gate: ONNX Runtime vs scikit-learn on the whole test split")
    parity = check_parity(pipeline, model, data.test.data, targets=data.test.target)
    log(format_parity(parity))

    step(7, f"writing model version {version} into {repository / NEWSGROUPS.name}")
    provenance = _provenance(data, target_names, metrics, parity, reports, model)
    exported = write_model(repository, NEWSGROUPS, model, target_names, provenance, version)
    log(f"wrote {exported.model_path}, {exported.labels_path}, {exported.provenance_path}")
    return exported
