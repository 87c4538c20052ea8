"""Object detection with YOLOS: image bytes in, objects in original-image pixels out.

Decoding (a JPEG at no more than the model needs: ``serving.detection.prepare_image``), EXIF
orientation and resizing are CPU-heavy and run in a thread pool, off the event loop; the forward
pass (which starts with the rescale, normalisation and padding, inside the graph) goes through
the model's micro-batcher, which hears of each decode as it starts so that an idle batch can
wait for the images still being decoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from serving.batching import MicroBatcher
from serving.detection import Detection, postprocess, prepare_image
from serving.errors import ModelNotReadyError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")


@dataclass(frozen=True)
class DetectionResult:
    objects: list[Detection]
    image_size: tuple[int, int]  # original (width, height)
    model_version: str


def _prepare(data: bytes, max_pixels: int) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    return prepare_image(data, max_pixels=max_pixels, formats=ACCEPTED_FORMATS)


class ObjectDetector:
    """Detects objects through the model's micro-batcher."""

    def __init__(
        self,
        batcher: MicroBatcher,
        labels: Sequence[str],
        executor: Executor | None,
        max_pixels: int,
    ) -> None:
        self.batcher = batcher
        self.labels = list(labels)
        self.executor = executor
        self.max_pixels = max_pixels

    async def detect(self, data: bytes, threshold: float) -> DetectionResult:
        if not self.labels:
            raise ModelNotReadyError(f"{self.batcher.model}: no labels (is the model exported?)")
        loop = asyncio.get_running_loop()
        with self.batcher.preparing():  # an idle batch waits for this image's decode
            inputs, size = await loop.run_in_executor(
                self.executor, _prepare, data, self.max_pixels
            )
        result = await self.batcher.submit(inputs)
        objects = postprocess(
            result.outputs["logits"][0],
            result.outputs["pred_boxes"][0],
            size,
            self.labels,
            threshold,
        )
        return DetectionResult(objects, size, result.model_version)
