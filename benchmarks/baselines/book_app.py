"""The book's serving design, as the baseline TritonGate is measured against.

"Building Data Science Applications with FastAPI" (2nd ed.), chapters 12 and 13, reproduced in its
structure and its costs (no ONNX, no Triton, no batching):

* ``POST /prediction`` ``{"text": ...}`` → ``{"category": ...}``: the joblib file
  ``(pipeline, target_names)`` is loaded in the lifespan; a class-based dependency with a plain
  ``def predict`` calls ``pipeline.predict([text])`` and the endpoint is a plain ``def`` too, so
  FastAPI runs both in its thread pool (ch. 12's final version, without its joblib disk cache:
  a cache would measure the cache, not the model).
* ``POST /object-detection`` (multipart field ``image``) → ``{"objects": [{"box": [x1, y1, x2,
  y2], "label": ...}]}``: PyTorch YOLOS through transformers (``YolosImageProcessor`` +
  ``YolosForObjectDetection``), threshold 0.7, ``target_sizes=[image.size[::-1]]``. As in the
  book the endpoint is ``async def`` and runs inference on the event loop, outside
  ``torch.no_grad()``. Registered only when ``TRITONGATE_BOOK_YOLOS_DIR`` names a
  ``save_pretrained`` directory (model and image processor); otherwise the app logs that it is
  not served.
* ``GET /noop``: a constant, to compare with :mod:`benchmarks.baselines.noop_app`.

Configuration: ``TRITONGATE_BOOK_JOBLIB`` (default
``.tritongate/artifacts/newsgroups/newsgroups_model.joblib``, written by ``tritongate export
newsgroups``) and ``TRITONGATE_BOOK_YOLOS_DIR``. Run:
``python -m uvicorn benchmarks.baselines.book_app:create_app --factory``.
"""

# No ``from __future__ import annotations``: FastAPI must evaluate the endpoint's annotations,
# and ``Depends(newsgroups_model.predict)`` refers to a local of create_app().
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, File, UploadFile
from PIL import Image
from pydantic import BaseModel

JOBLIB_ENV: Final = "TRITONGATE_BOOK_JOBLIB"
YOLOS_DIR_ENV: Final = "TRITONGATE_BOOK_YOLOS_DIR"
DEFAULT_JOBLIB: Final = Path(".tritongate/artifacts/newsgroups/newsgroups_model.joblib")
DETECTION_THRESHOLD: Final = 0.7

# uvicorn configures (and prints) the "uvicorn.error" logger tree; a child logs through it.
logger = logging.getLogger("uvicorn.error.book_app")


class PredictionInput(BaseModel):
    text: str


class PredictionOutput(BaseModel):
    category: str


class Object(BaseModel):
    box: tuple[float, float, float, float]
    label: str


class Objects(BaseModel):
    objects: list[Object]


class NewsgroupsModel:
    """The book's text classifier wrapper: loaded in the lifespan, used as a dependency."""

    model: Any | None = None  # a fitted scikit-learn Pipeline
    targets: list[str] | None = None

    def load_model(self, path: Path) -> None:
        import joblib

        model, targets = joblib.load(path)
        self.model = model
        self.targets = list(targets)

    def predict(self, input: PredictionInput) -> PredictionOutput:
        if self.model is None or self.targets is None:
            raise RuntimeError("Model is not loaded")
        prediction = self.model.predict([input.text])
        return PredictionOutput(category=self.targets[int(prediction[0])])


class ObjectDetection:
    """The book's YOLOS wrapper: processor and model from a local ``save_pretrained`` directory."""

    image_processor: Any | None = None  # transformers.YolosImageProcessor
    model: Any | None = None  # transformers.YolosForObjectDetection

    def load_model(self, directory: Path) -> None:
        from transformers import YolosForObjectDetection, YolosImageProcessor

        self.image_processor = YolosImageProcessor.from_pretrained(directory)
        self.model = YolosForObjectDetection.from_pretrained(directory)

    def predict(self, image: Image.Image) -> Objects:
        if self.image_processor is None or self.model is None:
            raise RuntimeError("Model is not loaded")
        inputs = self.image_processor(images=image, return_tensors="pt")
        outputs = self.model(**inputs)
        results = self.image_processor.post_process_object_detection(
            outputs, threshold=DETECTION_THRESHOLD, target_sizes=[image.size[::-1]]
        )[0]
        objects = [
            Object(box=box.tolist(), label=self.model.config.id2label[label.item()])
            for score, label, box in zip(
                results["scores"], results["labels"], results["boxes"], strict=True
            )
            if score > DETECTION_THRESHOLD
        ]
        return Objects(objects=objects)


def create_app() -> FastAPI:
    """The book's app, configured from the environment (see the module docstring)."""
    joblib_path = Path(os.environ.get(JOBLIB_ENV) or DEFAULT_JOBLIB)
    yolos_setting = os.environ.get(YOLOS_DIR_ENV)
    yolos_dir = Path(yolos_setting) if yolos_setting else None
    newsgroups_model = NewsgroupsModel()
    object_detection = ObjectDetection()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        newsgroups_model.load_model(joblib_path)
        logger.info("book app: newsgroups pipeline loaded from %s", joblib_path)
        if yolos_dir is not None:
            object_detection.load_model(yolos_dir)
            logger.info("book app: YOLOS loaded from %s", yolos_dir)
        else:
            logger.info(
                "book app: %s is not set, POST /object-detection is not served", YOLOS_DIR_ENV
            )
        yield

    app = FastAPI(
        title="TritonGate baseline: the book's design",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/noop")
    async def noop() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/prediction")
    def prediction(
        output: Annotated[PredictionOutput, Depends(newsgroups_model.predict)],
    ) -> PredictionOutput:
        return output

    if yolos_dir is not None:

        @app.post("/object-detection", response_model=Objects)
        async def post_object_detection(image: Annotated[UploadFile, File()]) -> Objects:
            image_object = Image.open(image.file)
            return object_detection.predict(image_object)

    return app
