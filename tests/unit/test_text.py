"""serving.text: inputs built from strings, categories read back through the labels."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
import pytest

from serving.batching import BatcherConfig, MicroBatcher
from serving.client import InferenceResult
from serving.errors import InferenceFailedError, ModelNotReadyError
from serving.text import TextClassifier, text_inputs

LABELS = ["alpha", "beta", "gamma"]


class FixedProbabilities:
    """Answers every row with the same probabilities."""

    def __init__(self, row: list[float]) -> None:
        self.row = np.asarray(row, dtype=np.float32)

    async def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], timeout: float | None = None
    ) -> InferenceResult:
        rows = inputs["text"].shape[0]
        return InferenceResult({"probabilities": np.tile(self.row, (rows, 1))}, "3")


async def _classify(client: object, labels: list[str], texts: list[str]) -> list:
    batcher = MicroBatcher("newsgroups", client, BatcherConfig(max_batch_size=8))  # type: ignore[arg-type]
    batcher.start()
    try:
        return await TextClassifier(batcher, labels).classify(texts)
    finally:
        await batcher.close()


def test_text_inputs_are_utf8_bytes_one_per_row() -> None:
    array = text_inputs(["héllo", "world"])["text"]
    assert array.shape == (2, 1) and array.dtype == object
    assert array[:, 0].tolist() == ["héllo".encode(), b"world"]


def test_category_is_the_most_probable_label() -> None:
    results = asyncio.run(_classify(FixedProbabilities([0.1, 0.7, 0.2]), LABELS, ["a", "b"]))
    assert [r.category for r in results] == ["beta", "beta"]
    assert results[0].probabilities == pytest.approx({"alpha": 0.1, "beta": 0.7, "gamma": 0.2})
    assert results[0].model_version == "3"


def test_without_labels_the_model_is_not_ready() -> None:
    with pytest.raises(ModelNotReadyError, match="no labels"):
        asyncio.run(_classify(FixedProbabilities([1.0]), [], ["a"]))


def test_labels_that_do_not_match_the_outputs_fail_clearly() -> None:
    with pytest.raises(InferenceFailedError, match="2 probabilities for 3 labels"):
        asyncio.run(_classify(FixedProbabilities([0.5, 0.5]), LABELS, ["a"]))
