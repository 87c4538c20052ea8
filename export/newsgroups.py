"""Export of the book's 20 Newsgroups classifier into the Triton model repository.

The model is the book's (chapter 11/12): ``make_pipeline(TfidfVectorizer(), MultinomialNB())``
trained on four categories of the "bydate" split, loaded with
:func:`sklearn.datasets.fetch_20newsgroups`. The export trains it, evaluates it on the test
split, writes reports and the book's joblib artifact, converts the pipeline to ONNX with
skl2onnx, gates the conversion on parity with scikit-learn over the whole test split, and writes
``model.onnx``, ``labels.txt`` and ``provenance.json`` with :func:`export.repository.write_model`.

Offline, the data comes from a local copy of the official archive (``20news-bydate.tar.gz``),
configured with the ``TRITONGATE_NEWSGROUPS_ARCHIVE`` environment variable or the CLI's
``--archive`` option. :func:`prepare_sklearn_cache` turns that archive into the cache
file that sklearn's own download step writes, so that ``fetch_20newsgroups`` itself loads the
data (``download_if_missing=False``): the dataset is exactly what an online run would see.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import pickle
import platform
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import joblib
import numpy as np
import onnx
import onnxruntime as ort
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.datasets import _twenty_newsgroups, fetch_20newsgroups, load_files
from sklearn.datasets._base import _pkl_filepath
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils import Bunch

from export.errors import DataUnavailableError, ExportError, ParityError
from export.repository import ExportedModel, check_onnx_against_spec, write_model
from serving.specs import NEWSGROUPS, NEWSGROUPS_CATEGORIES

Log = Callable[[str], None]

ARCHIVE_ENV_VAR: Final = "TRITONGATE_NEWSGROUPS_ARCHIVE"
ARCHIVE_CLI_OPTION: Final = "tritongate export newsgroups --archive PATH"
DATASET_NAME: Final = "20newsgroups-bydate"
RANDOM_STATE: Final = 0  # the book's fetch_20newsgroups(..., random_state=0)

# sklearn's own metadata for the official archive and its cache
# (sklearn/datasets/_twenty_newsgroups.py).
OFFICIAL_ARCHIVE: Final = _twenty_newsgroups.ARCHIVE
OFFICIAL_DOCUMENT_COUNTS: Final = {"train": 11_314, "test": 7_532}
OFFICIAL_CATEGORY_COUNT: Final = 20
SUBSET_FOLDERS: Final = {
    "train": _twenty_newsgroups.TRAIN_FOLDER,
    "test": _twenty_newsgroups.TEST_FOLDER,
}
CACHE_SOURCE_SUFFIX: Final = ".source.json"

# ONNX opset 17 runs on every ONNX Runtime >= 1.13, so also on the ONNX Runtime backend of
# NVIDIA's Triton images; skl2onnx 1.20's default (opset 22) needs ONNX Runtime >= 1.20.
TARGET_OPSET: Final = 17
# skl2onnx's tokenizer needs a locale that exists everywhere ("en_US.UTF-8" often does not).
TOKENIZER_LOCALE: Final = "C.UTF-8"
PARITY_TOLERANCE: Final = 0.01
PARITY_BATCH_SIZE: Final = 128  # the committed config's max_batch_size
LATENCY_SAMPLES: Final = 200

METRICS_FILENAME: Final = "metrics.json"
CONFUSION_PLOT_FILENAME: Final = "confusion_matrix.png"
JOBLIB_FILENAME: Final = "newsgroups_model.joblib"  # the book's file name

REPORTED_LIBRARIES: Final = (
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "scipy",
    "joblib",
)


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveInfo:
    """A local copy of the 20 Newsgroups archive and how it compares with the official one."""

    path: Path
    sha256: str
    official_sha256: str
    documents: dict[str, int]  # per subset, all categories in the archive
    categories: int

    @property
    def matches_official_sha256(self) -> bool:
        return self.sha256 == self.official_sha256

    @property
    def matches_official_counts(self) -> bool:
        return (
            self.categories == OFFICIAL_CATEGORY_COUNT
            and self.documents == OFFICIAL_DOCUMENT_COUNTS
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "official_sha256": self.official_sha256,
            "matches_official_sha256": self.matches_official_sha256,
            "documents": dict(self.documents),
            "categories": self.categories,
            "matches_official_document_counts": self.matches_official_counts,
        }


@dataclass(frozen=True)
class NewsgroupsData:
    """The book's train and test splits plus where they came from."""

    train: Bunch
    test: Bunch
    source: dict[str, Any]


def sklearn_cache_path(data_home: Path) -> Path:
    """The cache file ``fetch_20newsgroups(data_home=...)`` reads (``20news-bydate_py3.pkz``)."""
    return Path(_pkl_filepath(str(data_home), _twenty_newsgroups.CACHE_NAME))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe_checksum(info: ArchiveInfo) -> str:
    if info.matches_official_sha256:
        return f"sha256 {info.sha256} matches the official archive (sklearn's ARCHIVE.checksum)"
    counts = (
        "the official document counts"
        if info.matches_official_counts
        else "NOT the official document counts"
    )
    return (
        f"WARNING: sha256 {info.sha256} differs from the official archive's "
        f"{info.official_sha256} (sklearn's ARCHIVE.checksum): treating it as a repack; its layout "
        f"is sklearn's ({info.categories} categories, {info.documents['train']} train / "
        f"{info.documents['test']} test documents: {counts})"
    )


def _load_subsets(root: Path, archive: Path) -> dict[str, Bunch]:
    """``load_files`` per subset of an extracted archive, as sklearn's download step does."""
    subsets = {}
    for subset, folder in SUBSET_FOLDERS.items():
        if not (root / folder).is_dir():
            raise DataUnavailableError(
                f"{archive} is not a 20news-bydate archive: it has no top-level {folder}/ folder"
            )
        subsets[subset] = load_files(root / folder, encoding="latin1")
    return subsets


def _check_categories(
    subsets: Mapping[str, Bunch], archive: Path, categories: Sequence[str]
) -> None:
    for subset, bunch in subsets.items():
        missing = [name for name in categories if name not in bunch.target_names]
        if missing:
            raise DataUnavailableError(
                f"{archive}: the {subset} split lacks categories {missing} "
                f"(found {list(bunch.target_names)})"
            )


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write via a sibling temporary file so that readers never see a partial file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(payload)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _cache_source_path(cache: Path) -> Path:
    """Where :func:`prepare_sklearn_cache` records which archive a cache was built from."""
    return cache.with_name(cache.name + CACHE_SOURCE_SUFFIX)


def _read_cache_source(cache: Path) -> dict[str, Any] | None:
    """The archive record of a cache prepared from an archive, None if absent or unreadable."""
    source = _cache_source_path(cache)
    if not (cache.exists() and source.exists()):
        return None
    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _cached_archive_info(cache: Path, archive: Path, sha256: str) -> ArchiveInfo | None:
    """The record of an earlier preparation from the same archive bytes, if the cache is intact."""
    record = _read_cache_source(cache)
    if record is None or record.get("sha256") != sha256:
        return None
    return ArchiveInfo(
        path=archive,
        sha256=sha256,
        official_sha256=OFFICIAL_ARCHIVE.checksum,
        documents={k: int(v) for k, v in record["documents"].items()},
        categories=int(record["categories"]),
    )


def prepare_sklearn_cache(
    archive: Path,
    data_home: Path,
    categories: Sequence[str] = NEWSGROUPS_CATEGORIES,
    log: Log = print,
) -> ArchiveInfo:
    """Make ``fetch_20newsgroups(data_home=data_home)`` load ``archive`` without downloading.

    Does what sklearn's download step (``_download_20newsgroups``) does after fetching the file:
    extract the archive, ``load_files(<subset folder>, encoding="latin1")`` for train and test,
    and store ``{"train": ..., "test": ...}`` as a zlib-compressed pickle at sklearn's cache path.
    The sha256 is compared with the official one sklearn knows; a mismatch (a repack) is reported
    and recorded, not fatal, because the loader only depends on the archive's layout, which is
    checked. A cache prepared earlier from the same archive bytes is reused.
    """
    if not archive.is_file():
        raise DataUnavailableError(
            f"20 Newsgroups archive {archive} is not a file: check {ARCHIVE_ENV_VAR} "
            f"or the path given to `{ARCHIVE_CLI_OPTION}`"
        )
    data_home.mkdir(parents=True, exist_ok=True)
    cache = sklearn_cache_path(data_home)
    sha256 = file_sha256(archive)
    info = _cached_archive_info(cache, archive, sha256)
    if info is not None:
        log(f"reusing sklearn's cache {cache}, prepared from this archive")
        log(_describe_checksum(info))
        return info

    log(f"preparing sklearn's cache {cache} from {archive}")
    with tempfile.TemporaryDirectory(dir=data_home, prefix="20news_home.") as extracted:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(extracted, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataUnavailableError(f"{archive} is not a readable .tar.gz: {error}") from error
        subsets = _load_subsets(Path(extracted), archive)
    _check_categories(subsets, archive, categories)
    info = ArchiveInfo(
        path=archive,
        sha256=sha256,
        official_sha256=OFFICIAL_ARCHIVE.checksum,
        documents={name: len(bunch.data) for name, bunch in subsets.items()},
        categories=len(subsets["train"].target_names),
    )
    log(_describe_checksum(info))
    source = _cache_source_path(cache)
    source.unlink(missing_ok=True)  # never let an old record vouch for the new cache
    _write_atomically(cache, codecs.encode(pickle.dumps(subsets), "zlib_codec"))
    record = {
        "archive": str(archive),
        "sha256": sha256,
        "documents": info.documents,
        "categories": info.categories,
    }
    _write_atomically(source, json.dumps(record, indent=2).encode())
    return info


def _fetch(data_home: Path, categories: Sequence[str], download: bool) -> tuple[Bunch, Bunch]:
    return tuple(  # type: ignore[return-value]
        fetch_20newsgroups(
            subset=subset,
            categories=list(categories),
            random_state=RANDOM_STATE,
            data_home=str(data_home),
            download_if_missing=download,
        )
        for subset in ("train", "test")
    )


def _offline_message(data_home: Path, error: BaseException) -> str:
    return (
        f"the 20 Newsgroups dataset is not cached in {data_home} and downloading it from "
        f"{OFFICIAL_ARCHIVE.url} failed ({type(error).__name__}: {error}). Offline, set "
        f"{ARCHIVE_ENV_VAR} to a local copy of {OFFICIAL_ARCHIVE.filename} "
        f"or pass it with `{ARCHIVE_CLI_OPTION}`"
    )


def fetch_newsgroups_data(
    *,
    archive: Path | None,
    data_home: Path,
    categories: Sequence[str] = NEWSGROUPS_CATEGORIES,
    log: Log = print,
) -> NewsgroupsData:
    """The book's splits via ``fetch_20newsgroups``, from ``archive`` or a download.

    With ``archive``, sklearn's cache is prepared from it and nothing is downloaded. Without it,
    sklearn uses its cache in ``data_home`` or downloads the official archive; when that fails
    (offline), :class:`DataUnavailableError` says how to configure a local archive.
    """
    source: dict[str, Any] = {"data_home": str(data_home)}
    if archive is not None:
        info = prepare_sklearn_cache(archive, data_home, categories, log)
        source |= {"kind": "archive", "archive": info.as_dict()}
        try:
            train, test = _fetch(data_home, categories, download=False)
        except OSError as error:
            raise ExportError(
                f"fetch_20newsgroups could not read the cache prepared from {archive} in "
                f"{data_home} ({error}); has scikit-learn changed its cache format?"
            ) from error
    else:
        cached = sklearn_cache_path(data_home).exists()
        if cached:
            log(f"no archive configured: using sklearn's cache {sklearn_cache_path(data_home)}")
        else:
            log(f"no archive configured: downloading {OFFICIAL_ARCHIVE.url} into {data_home}")
        try:
            train, test = _fetch(data_home, categories, download=True)
        except OSError as error:
            raise DataUnavailableError(_offline_message(data_home, error)) from error
        source |= {"kind": "sklearn-cache" if cached else "download", "url": OFFICIAL_ARCHIVE.url}
        prepared_from = _read_cache_source(sklearn_cache_path(data_home)) if cached else None
        if prepared_from is not None:
            source["cache_prepared_from_archive"] = prepared_from
    return NewsgroupsData(train=train, test=test, source=source)


def load_newsgroups(
    *,
    archive: Path | None,
    data_home: Path,
    log: Log = print,
) -> tuple[Bunch, Bunch]:
    """The book's train and test splits of its four categories.

    ``fetch_20newsgroups(subset=..., categories=[...], random_state=0, data_home=data_home)``
    after :func:`fetch_newsgroups_data` has made the data available (archive or download).
    """
    data = fetch_newsgroups_data(archive=archive, data_home=data_home, log=log)
    return data.train, data.test


# --- training and evaluation -----------------------------------------------------------------


def train_pipeline(train: Bunch) -> Pipeline:
    """The book's model: TF-IDF then multinomial naive Bayes, default parameters."""
    model = make_pipeline(TfidfVectorizer(), MultinomialNB())
    model.fit(train.data, train.target)
    return model


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
    joblib_model: Path | None


def save_reports(
    metrics: Mapping[str, Any],
    artifacts_dir: Path,
    pipeline: Pipeline | None = None,
) -> ReportFiles:
    """Write ``metrics.json``, the confusion-matrix PNG and, given the pipeline, the book's
    joblib artifact ``(pipeline, target_names)`` (target names: ``metrics["labels"]``)."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = artifacts_dir / METRICS_FILENAME
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_path = artifacts_dir / CONFUSION_PLOT_FILENAME
    _plot_confusion_matrix(metrics, plot_path)
    joblib_path = None
    if pipeline is not None:
        joblib_path = artifacts_dir / JOBLIB_FILENAME
        joblib.dump((pipeline, [str(label) for label in metrics["labels"]]), joblib_path)
    return ReportFiles(metrics_path, plot_path, joblib_path)


# --- conversion and parity -------------------------------------------------------------------


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


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _text_batch(texts: Sequence[str]) -> np.ndarray:
    """ORT's string input: a ``[N, 1]`` object array of ``str``."""
    batch = np.empty((len(texts), 1), dtype=object)
    batch[:, 0] = list(texts)
    return batch


def _run_onnx(
    session: ort.InferenceSession, texts: Sequence[str], batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    labels, probabilities = [], []
    for start in range(0, len(texts), batch_size):
        label, proba = session.run(
            ["label", "probabilities"], {"text": _text_batch(texts[start : start + batch_size])}
        )
        labels.append(label)
        probabilities.append(proba)
    return np.concatenate(labels), np.concatenate(probabilities)


def _single_latency_ms(call: Callable[[str], object], texts: Sequence[str]) -> dict[str, float]:
    """Median and mean milliseconds of ``call`` on one text at a time (after a warm-up call)."""
    call(texts[0])
    durations = []
    for text in texts:
        start = time.perf_counter()
        call(text)
        durations.append(time.perf_counter() - start)
    return {"median": float(np.median(durations) * 1000), "mean": float(np.mean(durations) * 1000)}


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def check_parity(
    pipeline: Pipeline,
    onnx_model: onnx.ModelProto,
    texts: Sequence[str],
    *,
    targets: Sequence[int] | np.ndarray | None = None,
    tolerance: float = PARITY_TOLERANCE,
    batch_size: int = PARITY_BATCH_SIZE,
    latency_samples: int = LATENCY_SAMPLES,
) -> dict[str, Any]:
    """Compare ONNX Runtime with scikit-learn on every text; :class:`ParityError` on a mismatch.

    Every document must get the same predicted class and every probability must be within
    ``tolerance``. Returns the figures: documents, agreement, max |Δprobability|, accuracy of both
    (given ``targets``) and per-document latencies (single documents, and batched throughput).
    """
    texts = list(texts)
    if not texts:
        raise ValueError("check_parity needs at least one text")
    session = _session(onnx_model)
    _run_onnx(session, texts[:batch_size], batch_size)  # warm-up: first runs allocate
    (onnx_labels, onnx_proba), onnx_seconds = _timed(lambda: _run_onnx(session, texts, batch_size))
    sk_labels, sk_seconds = _timed(lambda: pipeline.predict(texts))
    sk_proba = pipeline.predict_proba(texts)
    disagreements = int(np.count_nonzero(onnx_labels != sk_labels))
    max_diff = float(np.max(np.abs(onnx_proba.astype(np.float64) - sk_proba)))
    sample = texts[:latency_samples]
    onnx_single = _single_latency_ms(
        lambda text: session.run(["label"], {"text": _text_batch([text])}), sample
    )
    sk_single = _single_latency_ms(lambda text: pipeline.predict([text]), sample)
    figures: dict[str, Any] = {
        "documents": len(texts),
        "agreeing_documents": len(texts) - disagreements,
        "disagreements": disagreements,
        "agreement": (len(texts) - disagreements) / len(texts),
        "max_abs_prob_diff": max_diff,
        "tolerance": tolerance,
        "latency": {
            "single_samples": len(sample),
            "onnxruntime_single_ms_median": onnx_single["median"],
            "onnxruntime_single_ms_mean": onnx_single["mean"],
            "sklearn_single_ms_median": sk_single["median"],
            "sklearn_single_ms_mean": sk_single["mean"],
            "onnxruntime_batch_size": batch_size,
            "onnxruntime_batched_ms_per_doc": onnx_seconds * 1000 / len(texts),
            "sklearn_batched_ms_per_doc": sk_seconds * 1000 / len(texts),
        },
    }
    if targets is not None:
        expected = np.asarray(targets)
        figures["accuracy_sklearn"] = float(accuracy_score(expected, sk_labels))
        figures["accuracy_onnxruntime"] = float(accuracy_score(expected, onnx_labels))
    if disagreements or not max_diff <= tolerance:
        raise ParityError(
            f"ONNX model disagrees with scikit-learn: {disagreements} of {len(texts)} documents "
            f"get another class, max |Δprobability| {max_diff:.6f} (tolerance {tolerance})"
        )
    return figures


def format_parity(figures: Mapping[str, Any]) -> str:
    """One human-readable paragraph of :func:`check_parity`'s figures."""
    latency = figures["latency"]
    lines = [
        f"documents {figures['documents']}, same class for {figures['agreeing_documents']} "
        f"({figures['agreement']:.2%}), disagreements {figures['disagreements']}",
        f"max |Δprobability| {figures['max_abs_prob_diff']:.6f} (tolerance {figures['tolerance']})",
    ]
    if "accuracy_sklearn" in figures:
        lines.append(
            f"accuracy sklearn {figures['accuracy_sklearn']:.4f}, "
            f"onnxruntime {figures['accuracy_onnxruntime']:.4f}"
        )
    lines.append(
        f"latency per document, one at a time (median/mean of {latency['single_samples']}): "
        f"onnxruntime {latency['onnxruntime_single_ms_median']:.3f}/"
        f"{latency['onnxruntime_single_ms_mean']:.3f} ms, sklearn "
        f"{latency['sklearn_single_ms_median']:.3f}/{latency['sklearn_single_ms_mean']:.3f} ms"
    )
    lines.append(
        "latency per document, whole split: onnxruntime "
        f"{latency['onnxruntime_batched_ms_per_doc']:.3f} ms "
        f"(batches of {latency['onnxruntime_batch_size']}), sklearn "
        f"{latency['sklearn_batched_ms_per_doc']:.3f} ms (one call)"
    )
    return "\n".join(lines)


# --- the export ------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in REPORTED_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


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
        "artifacts": {name: str(path) for name, path in asdict(reports).items() if path},
        "libraries": library_versions(),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_newsgroups(
    repository: Path,
    *,
    archive: Path | None,
    data_home: Path,
    artifacts_dir: Path,
    version: int = 1,
    log: Log = print,
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
    pipeline, seconds = _timed(lambda: train_pipeline(data.train))
    log(f"trained in {seconds:.1f} s")

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
