"""The newsgroups export on a tiny pipeline: ONNX tensor names/types (export.newsgroups), the
parity gate (export.newsgroups_parity) and the confusion table (export.newsgroups_reports)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils import Bunch

from export.errors import ExportError, ParityError
from export.newsgroups import TARGET_OPSET, to_onnx
from export.newsgroups_parity import check_parity, format_parity
from export.newsgroups_reports import evaluate, format_confusion_matrix
from serving.specs import NEWSGROUPS

TEXTS = [
    "the mac has a fast cpu and more ram memory",
    "my powerbook computer needs a memory upgrade",
    "apple quadra monitor and scsi drive",
    "clipper chip encryption key escrow",
    "pgp rsa cipher keeps email private",
    "the nsa wants the encryption keys",
    "jesus christ and the church",
    "faith prayer and the bible gospel",
    "grace salvation worship on sunday",
    "koresh cult in waco texas",
    "religion morality and belief debates",
    "atheist view on myth and doctrine",
]
TARGETS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
LABELS = ["comp.sys.mac.hardware", "sci.crypt", "soc.religion.christian", "talk.religion.misc"]
UNSEEN = ["computer cpu memory ram", "secret key", "church choir", "Ünïcode naïve café text", ""]


def _fit(texts: list[str], targets: list[int]) -> Pipeline:
    return make_pipeline(TfidfVectorizer(), MultinomialNB()).fit(texts, targets)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return _fit(TEXTS, TARGETS)


@pytest.fixture(scope="module")
def model(pipeline: Pipeline) -> onnx.ModelProto:
    return to_onnx(pipeline, n_classes=4)


def _tensor(value_info: onnx.ValueInfoProto) -> tuple[int, list[int | str]]:
    tensor_type = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else "batch" for d in tensor_type.shape.dim]
    return tensor_type.elem_type, dims


def test_tensors_are_named_and_typed_as_the_spec(model: onnx.ModelProto) -> None:
    inputs = {vi.name: _tensor(vi) for vi in model.graph.input}
    outputs = {vi.name: _tensor(vi) for vi in model.graph.output}
    assert inputs == {"text": (onnx.TensorProto.STRING, ["batch", 1])}
    assert outputs == {
        "label": (onnx.TensorProto.INT64, ["batch"]),
        "probabilities": (onnx.TensorProto.FLOAT, ["batch", 4]),
    }
    assert [spec.name for spec in NEWSGROUPS.outputs] == list(outputs)
    default_opset = next(entry.version for entry in model.opset_import if entry.domain == "")
    assert default_opset == TARGET_OPSET


def test_parity_on_training_and_unseen_texts(pipeline: Pipeline, model: onnx.ModelProto) -> None:
    texts = TEXTS + UNSEEN
    figures = check_parity(pipeline, model, texts, batch_size=5, latency_samples=3)
    assert figures["documents"] == len(texts)
    assert figures["disagreements"] == 0
    assert figures["agreement"] == 1.0
    assert figures["max_abs_prob_diff"] <= 0.01
    assert figures["latency"]["single_samples"] == 3
    assert "accuracy_sklearn" not in figures
    print("\n" + format_parity(figures))


def test_parity_reports_accuracy_of_both(pipeline: Pipeline, model: onnx.ModelProto) -> None:
    figures = check_parity(pipeline, model, TEXTS, targets=TARGETS)
    assert figures["accuracy_sklearn"] == figures["accuracy_onnxruntime"] == 1.0
    assert "accuracy sklearn 1.0000, onnxruntime 1.0000" in format_parity(figures)


def test_parity_gate_fails_on_a_different_model(model: onnx.ModelProto) -> None:
    swapped = _fit(TEXTS, [3 - target for target in TARGETS])
    with pytest.raises(ParityError, match=r"ONNX model disagrees") as caught:
        check_parity(swapped, model, TEXTS)
    assert "12 of 12 documents get another class" in str(caught.value)


def test_parity_gate_fails_when_probabilities_drift(model: onnx.ModelProto) -> None:
    """Same argmax everywhere, but smoothed differently: probabilities move beyond 0.01."""
    smoothed = make_pipeline(TfidfVectorizer(), MultinomialNB(alpha=0.2)).fit(TEXTS, TARGETS)
    with pytest.raises(ParityError, match=r"0 of 12 documents get another class, max \|Δp"):
        check_parity(smoothed, model, TEXTS, tolerance=0.01)


def test_parity_needs_texts(pipeline: Pipeline, model: onnx.ModelProto) -> None:
    with pytest.raises(ValueError, match="at least one text"):
        check_parity(pipeline, model, [])


def test_conversion_rejects_a_class_count_mismatch() -> None:
    three_classes = _fit(TEXTS[:9], TARGETS[:9])
    with pytest.raises(ExportError, match="classes"):
        to_onnx(three_classes, n_classes=4)


def test_evaluate_and_the_confusion_table(pipeline: Pipeline) -> None:
    test = Bunch(data=TEXTS[:6], target=np.array(TARGETS[:6]))
    metrics = evaluate(pipeline, test, LABELS)
    assert metrics["accuracy"] == 1.0
    assert metrics["confusion_matrix"] == [[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert metrics["support"] == dict(zip(LABELS, [3, 3, 0, 0], strict=True))
    table = format_confusion_matrix(metrics).splitlines()
    assert table[0].split() == ["true", "\\", "predicted", "[0]", "[1]", "[2]", "[3]"]
    assert table[1].split() == ["[0]", "comp.sys.mac.hardware", "3", "0", "0", "0"]
