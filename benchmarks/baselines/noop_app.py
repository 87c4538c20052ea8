"""The API stack's own ceiling: FastAPI + uvicorn answering constants, no model.

Same request and response shapes as the book's prediction endpoint, so the difference between
this app and :mod:`benchmarks.baselines.book_app` (or the TritonGate API) under the same load is
the cost of inference, not of HTTP, routing or validation:

* ``POST /prediction`` (``async def``): validates ``{"text": ...}``, returns a constant
  ``{"category": ...}``;
* ``POST /prediction-threadpool`` (plain ``def``, as the book's endpoint): the same, dispatched to
  Starlette's thread pool, so that dispatch's cost can be told apart from the model's;
* ``GET /noop``: a constant, the cheapest request the stack can serve.

Run: ``python -m uvicorn benchmarks.baselines.noop_app:app`` (or ``create_app`` with
``--factory``).
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from pydantic import BaseModel

NOOP_CATEGORY: Final = "noop"


class PredictionInput(BaseModel):
    text: str


class PredictionOutput(BaseModel):
    category: str


def create_app() -> FastAPI:
    """The no-op app."""
    app = FastAPI(title="TritonGate baseline: no-op", docs_url=None, redoc_url=None)

    @app.get("/noop")
    async def noop() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/prediction")
    async def prediction(payload: PredictionInput) -> PredictionOutput:
        return PredictionOutput(category=NOOP_CATEGORY)

    @app.post("/prediction-threadpool")
    def prediction_threadpool(payload: PredictionInput) -> PredictionOutput:
        return PredictionOutput(category=NOOP_CATEGORY)

    return app


app = create_app()
