"""The newsgroups parity gate: the ONNX model in ONNX Runtime against the scikit-learn pipeline.

:func:`check_parity` runs both on every text (the export uses the whole test split), requires
the same class for every document and probabilities within a tolerance, and measures latencies;
:func:`format_parity` prints its figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline

from export.errors import ParityError

PARITY_TOLERANCE: Final = 0.01
PARITY_BATCH_SIZE: Final = 128  # the committed config's max_batch_size
LATENCY_SAMPLES: Final = 200


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
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
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
