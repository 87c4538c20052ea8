"""The 20 Newsgroups export end to end: data → training → reports → ONNX → parity → repository.

The archive comes from ``TRITONGATE_NEWSGROUPS_ARCHIVE`` (the real corpus; the Makefile sets it
when ../shared/data exists). Without it the export runs the same code path on a synthetic
corpus in the official archive's format (tests/helpers/newsgroups_corpus.py), and the assertions
that only hold for the real corpus (accuracy level, split sizes) are skipped.
Run with ``-s`` to see the export's log: accuracy, confusion matrix and parity figures.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.error import URLError

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import _twenty_newsgroups, fetch_20newsgroups
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline, make_pipeline

from export.errors import DataUnavailableError
from export.newsgroups import export_newsgroups
from export.newsgroups_data import (
    ARCHIVE_ENV_VAR,
    OFFICIAL_ARCHIVE,
    fetch_newsgroups_data,
    sklearn_cache_path,
)
from export.newsgroups_parity import PARITY_TOLERANCE
from export.newsgroups_reports import CONFUSION_PLOT_FILENAME, JOBLIB_FILENAME, METRICS_FILENAME
from export.provenance import file_sha256
from export.repository import ExportedModel, check_onnx_against_spec
from serving.model_repository import read_labels, read_provenance
from serving.specs import NEWSGROUPS, NEWSGROUPS_CATEGORIES
from tests.helpers.newsgroups_corpus import EXAMPLES, write_newsgroups_archive
from tests.stack import copy_committed_configs

# The book's four categories in the real bydate split (sklearn orders target_names by name).
REAL_SPLIT_SIZES = {"train": 2149, "test": 1430}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ExportRun:
    """One export and everything it was given and wrote."""

    archive: Path
    real: bool
    repository: Path
    data_home: Path
    artifacts: Path
    exported: ExportedModel
    log: list[str]

    @property
    def model_dir(self) -> Path:
        return self.repository / NEWSGROUPS.name


def _configured_archive() -> Path | None:
    value = os.environ.get(ARCHIVE_ENV_VAR, "").strip()
    return Path(value) if value and Path(value).is_file() else None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> ExportRun:
    work = tmp_path_factory.mktemp("newsgroups-export")
    configured = _configured_archive()
    archive = configured or write_newsgroups_archive(work / "20news-bydate.tar.gz")
    print(f"\n20 Newsgroups archive: {archive} ({'real' if configured else 'synthetic'})")
    repository = work / "repo"
    copy_committed_configs(repository, models=(NEWSGROUPS.name,))
    lines: list[str] = []

    def log(line: str) -> None:
        print(line)
        lines.append(line)

    exported = export_newsgroups(
        repository,
        archive=archive,
        data_home=work / "data",
        artifacts_dir=work / "artifacts",
        log=log,
    )
    return ExportRun(
        archive=archive,
        real=configured is not None,
        repository=repository,
        data_home=work / "data",
        artifacts=work / "artifacts",
        exported=exported,
        log=lines,
    )


def _metrics(run: ExportRun) -> dict:
    return json.loads((run.artifacts / METRICS_FILENAME).read_text(encoding="utf-8"))


def test_parity_gate_passes_on_the_whole_test_split(run: ExportRun) -> None:
    parity = read_provenance(run.model_dir, run.exported.version)["parity"]
    test_documents = _metrics(run)["test_documents"]
    assert parity["documents"] == test_documents
    assert parity["disagreements"] == 0
    assert parity["agreeing_documents"] == test_documents
    assert parity["agreement"] == 1.0
    assert 0.0 <= parity["max_abs_prob_diff"] <= PARITY_TOLERANCE
    assert parity["accuracy_onnxruntime"] == parity["accuracy_sklearn"]
    assert parity["latency"]["onnxruntime_single_ms_median"] > 0
    assert parity["latency"]["sklearn_single_ms_median"] > 0
    log = "\n".join(run.log)
    assert "max |Δprobability|" in log
    assert f"same class for {test_documents}" in log


def test_accuracy_is_what_sklearn_gives(run: ExportRun) -> None:
    """Train the book's pipeline again from plain fetch_20newsgroups on the prepared cache."""
    splits = {
        subset: fetch_20newsgroups(
            subset=subset,
            categories=list(NEWSGROUPS_CATEGORIES),
            random_state=0,
            data_home=str(run.data_home),
            download_if_missing=False,
        )
        for subset in ("train", "test")
    }
    model = make_pipeline(TfidfVectorizer(), MultinomialNB())
    model.fit(splits["train"].data, splits["train"].target)
    expected = accuracy_score(splits["test"].target, model.predict(splits["test"].data))
    metrics = _metrics(run)
    assert metrics["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert f"accuracy {expected:.4f}" in "\n".join(run.log)
    assert metrics["train_documents"] == len(splits["train"].data)
    assert metrics["test_documents"] == len(splits["test"].data)
    if run.real:
        assert metrics["accuracy"] > 0.8
        assert {"train": metrics["train_documents"], "test": metrics["test_documents"]} == (
            REAL_SPLIT_SIZES
        )


def test_metrics_json_has_confusion_matrix_and_counts(run: ExportRun) -> None:
    metrics = _metrics(run)
    labels = metrics["labels"]
    matrix = np.asarray(metrics["confusion_matrix"])
    assert labels == sorted(NEWSGROUPS_CATEGORIES)
    assert matrix.shape == (4, 4)
    assert matrix.sum() == metrics["test_documents"]
    assert np.trace(matrix) == metrics["correct"]
    assert metrics["correct"] / metrics["test_documents"] == pytest.approx(metrics["accuracy"])
    assert metrics["confusion_matrix_axes"] == {"rows": "true", "columns": "predicted"}
    assert list(metrics["support"].values()) == matrix.sum(axis=1).tolist()
    assert list(metrics["predicted"].values()) == matrix.sum(axis=0).tolist()
    assert set(metrics["per_class"]) == set(labels)
    assert "true \\ predicted" in "\n".join(run.log)


def test_confusion_plot_is_a_png(run: ExportRun) -> None:
    payload = (run.artifacts / CONFUSION_PLOT_FILENAME).read_bytes()
    assert payload.startswith(PNG_SIGNATURE)
    assert len(payload) > 10_000


def test_joblib_artifact_is_the_books_tuple(run: ExportRun) -> None:
    model, targets = joblib.load(run.artifacts / JOBLIB_FILENAME)
    assert isinstance(model, Pipeline)
    assert isinstance(targets, list)
    assert all(isinstance(name, str) for name in targets)
    assert targets == read_labels(run.model_dir)
    for category, text in EXAMPLES.items():
        assert targets[model.predict([text])[0]] == category, text
    assert targets[model.predict(["computer cpu memory ram"])[0]] == "comp.sys.mac.hardware"


def test_labels_file_lists_target_names_in_class_order(run: ExportRun) -> None:
    labels = read_labels(run.model_dir)
    assert labels == _metrics(run)["labels"]
    assert sorted(labels) == sorted(NEWSGROUPS_CATEGORIES)
    assert run.exported.labels_path == run.model_dir / "labels.txt"


def test_model_file_matches_spec_and_the_joblib_pipeline(run: ExportRun) -> None:
    assert run.exported.model_path == run.model_dir / "1" / "model.onnx"
    model = onnx.load(str(run.exported.model_path))
    check_onnx_against_spec(model, NEWSGROUPS)
    pipeline, targets = joblib.load(run.artifacts / JOBLIB_FILENAME)
    texts = list(EXAMPLES.values())
    session = ort.InferenceSession(str(run.exported.model_path), providers=["CPUExecutionProvider"])
    batch = np.array(texts, dtype=object).reshape(-1, 1)
    label, probabilities = session.run(["label", "probabilities"], {"text": batch})
    assert label.dtype == np.int64 and label.shape == (len(texts),)
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(texts), 4)
    np.testing.assert_array_equal(label, pipeline.predict(texts))
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(texts), atol=PARITY_TOLERANCE)
    assert [targets[i] for i in label] == list(EXAMPLES)


def test_provenance_records_data_metrics_parity_and_libraries(run: ExportRun) -> None:
    provenance = read_provenance(run.model_dir, run.exported.version)
    dataset = provenance["dataset"]
    assert dataset["name"] == "20newsgroups-bydate"
    assert dataset["categories"] == list(NEWSGROUPS_CATEGORIES)
    assert dataset["kind"] == "archive"
    archive = dataset["archive"]
    assert archive["path"] == str(run.archive)
    assert archive["sha256"] == file_sha256(run.archive)
    assert archive["official_sha256"] == OFFICIAL_ARCHIVE.checksum
    assert archive["matches_official_sha256"] == (archive["sha256"] == OFFICIAL_ARCHIVE.checksum)
    metrics = _metrics(run)
    assert dataset["train_documents"] == metrics["train_documents"]
    assert dataset["test_documents"] == metrics["test_documents"]
    if run.real:
        assert archive["documents"] == {"train": 11_314, "test": 7_532}
        assert archive["categories"] == 20
        assert archive["matches_official_document_counts"]
    else:
        assert not archive["matches_official_sha256"]
        assert any("differs from the official archive" in line for line in run.log)
    assert provenance["metrics"]["accuracy"] == metrics["accuracy"]
    assert provenance["metrics"]["confusion_matrix"] == metrics["confusion_matrix"]
    assert provenance["model"]["labels"] == read_labels(run.model_dir)
    assert provenance["parity"]["max_abs_prob_diff"] <= PARITY_TOLERANCE
    assert {"scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"} <= set(
        provenance["libraries"]
    )
    assert datetime.fromisoformat(provenance["exported_at"]).tzinfo is not None
    assert provenance["artifacts"]["joblib_model"] == str(run.artifacts / JOBLIB_FILENAME)


def test_second_load_reuses_the_prepared_cache(run: ExportRun) -> None:
    lines: list[str] = []
    data = fetch_newsgroups_data(archive=run.archive, data_home=run.data_home, log=lines.append)
    assert any(line.startswith("reusing sklearn's cache") for line in lines)
    assert len(data.test.data) == _metrics(run)["test_documents"]
    assert list(data.train.target_names) == read_labels(run.model_dir)


def test_without_archive_the_prepared_cache_is_used_and_traced(run: ExportRun) -> None:
    data = fetch_newsgroups_data(archive=None, data_home=run.data_home, log=lambda _: None)
    assert data.source["kind"] == "sklearn-cache"
    assert data.source["cache_prepared_from_archive"]["sha256"] == file_sha256(run.archive)
    assert len(data.test.data) == _metrics(run)["test_documents"]


def test_prepared_cache_equals_sklearns_own_download_step(
    run: ExportRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sklearn's download step, with the network fetch answered by the same local archive."""

    def fetch_from_disk(remote: object, dirname: str, *args: object, **kwargs: object) -> Path:
        target = Path(dirname) / OFFICIAL_ARCHIVE.filename
        shutil.copyfile(run.archive, target)
        return target

    monkeypatch.setattr(_twenty_newsgroups, "_fetch_remote", fetch_from_disk)
    for subset in ("train", "test"):
        ours, sklearns = (
            fetch_20newsgroups(
                subset=subset,
                categories=list(NEWSGROUPS_CATEGORIES),
                random_state=0,
                data_home=str(data_home),
            )
            for data_home in (run.data_home, tmp_path / "sklearn")
        )
        assert ours.data == sklearns.data
        np.testing.assert_array_equal(ours.target, sklearns.target)
        assert ours.target_names == sklearns.target_names
        assert [Path(name).name for name in ours.filenames] == [
            Path(name).name for name in sklearns.filenames
        ]


def test_another_archive_replaces_the_cache(tmp_path: Path) -> None:
    data_home = tmp_path / "data"
    first = write_newsgroups_archive(tmp_path / "a" / "20news-bydate.tar.gz", seed=1)
    second = write_newsgroups_archive(
        tmp_path / "b" / "20news-bydate.tar.gz", seed=2, test_per_class=5
    )
    test_first = fetch_newsgroups_data(archive=first, data_home=data_home, log=lambda _: None).test
    lines: list[str] = []
    test_second = fetch_newsgroups_data(archive=second, data_home=data_home, log=lines.append).test
    assert any(line.startswith("preparing sklearn's cache") for line in lines)
    assert (len(test_first.data), len(test_second.data)) == (60, 20)


def test_no_archive_and_no_network_raises_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    def offline(remote: object, *args: object, **kwargs: object) -> None:
        attempts.append(remote.url)  # type: ignore[attr-defined]
        raise URLError("[Errno -3] Temporary failure in name resolution (simulated)")

    monkeypatch.setattr(_twenty_newsgroups, "_fetch_remote", offline)
    with pytest.raises(DataUnavailableError) as caught:
        fetch_newsgroups_data(archive=None, data_home=tmp_path / "empty", log=lambda _: None)
    message = str(caught.value)
    assert attempts == [OFFICIAL_ARCHIVE.url]
    assert ARCHIVE_ENV_VAR in message
    assert "--archive" in message
    assert "Temporary failure in name resolution" in message
    assert not sklearn_cache_path(tmp_path / "empty").exists()


def test_missing_archive_file_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match=ARCHIVE_ENV_VAR):
        fetch_newsgroups_data(archive=tmp_path / "nope.tar.gz", data_home=tmp_path / "data")


def test_archive_without_the_bydate_layout_is_rejected(tmp_path: Path) -> None:
    archive = write_newsgroups_archive(
        tmp_path / "partial.tar.gz", categories=NEWSGROUPS_CATEGORIES[:2]
    )
    with pytest.raises(DataUnavailableError, match="lacks categories"):
        fetch_newsgroups_data(archive=archive, data_home=tmp_path / "data", log=lambda _: None)
    not_gzip = tmp_path / "plain.tar.gz"
    not_gzip.write_text("not an archive")
    with pytest.raises(DataUnavailableError, match="not a readable"):
        fetch_newsgroups_data(archive=not_gzip, data_home=tmp_path / "data", log=lambda _: None)
