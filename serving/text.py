"""Text classification with the newsgroups model: strings in, categories and probabilities out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.batching import MicroBatcher
from serving.errors import InferenceFailedError, ModelNotReadyError
from serving.specs import NEWSGROUPS


@dataclass(frozen=True)
class Classification:
    category: str
    probabilities: dict[str, float]
    model_version: str


def text_inputs(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The model's ``text`` input for a batch of documents: [n, 1] UTF-8 bytes objects."""
    (text,) = NEWSGROUPS.inputs
    array = np.empty((len(texts), *text.dims), dtype=object)
    array[:, 0] = [value.encode("utf-8") for value in texts]
    return {text.name: array}


class TextClassifier:
    """Classifies documents through the model's micro-batcher."""

    def __init__(self, batcher: MicroBatcher, labels: Sequence[str]) -> None:
        self.batcher = batcher
        self.labels = list(labels)

    async def classify(self, texts: Sequence[str]) -> list[Classification]:
        """One classification per text, in order (sent as one multi-row item)."""
        if not self.labels:
            raise ModelNotReadyError(f"{self.batcher.model}: no labels (is the model exported?)")
        result = await self.batcher.submit(text_inputs(texts))
        probabilities = result.outputs["probabilities"]
        if probabilities.shape[-1] != len(self.labels):
            raise InferenceFailedError(
                f"{self.batcher.model}: {probabilities.shape[-1]} probabilities for "
                f"{len(self.labels)} labels"
            )
        return [
            Classification(
                category=self.labels[int(np.argmax(row))],
                probabilities={label: float(p) for label, p in zip(self.labels, row, strict=True)},
                model_version=result.model_version,
            )
            for row in probabilities
        ]
