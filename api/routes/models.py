"""What is served: ``GET /models`` and ``GET /models/{name}``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import ServicesDep
from api.responses import error_responses
from api.schemas import ModelDescription, ModelList, TensorInfo
from serving.registry import ModelRegistry, ModelState
from serving.specs import MODEL_SPECS, TensorSpec

router = APIRouter(tags=["models"])


def _tensors(tensors: tuple[TensorSpec, ...]) -> list[TensorInfo]:
    return [TensorInfo(name=t.name, data_type=t.data_type, dims=list(t.dims)) for t in tensors]


def describe(registry: ModelRegistry, state: ModelState) -> ModelDescription:
    spec = MODEL_SPECS[state.name]
    info = state.info
    provenance = state.provenance
    random_weights = bool(provenance and provenance.get("random_weights"))
    return ModelDescription(
        name=state.name,
        versions=list(info.versions) if info else [],
        ready=state.ready,
        state="READY" if state.ready else "UNAVAILABLE",
        max_batch_size=registry.max_batch_size(state.name),
        inputs=_tensors(info.inputs if info else spec.inputs),
        outputs=_tensors(info.outputs if info else spec.outputs),
        labels=list(state.labels),
        random_weights=random_weights,
        provenance=provenance,
        error=state.error,
    )


@router.get("/models")
async def list_models(services: ServicesDep) -> ModelList:
    """Every served model with its state, interface, labels and weights' provenance."""
    registry = services.registry
    return ModelList(models=[describe(registry, state) for state in registry.states.values()])


@router.get("/models/{name}", responses=error_responses((404, "No such model")))
async def get_model(name: str, services: ServicesDep) -> ModelDescription:
    """One model; `random_weights` is true when the weights are random (no real detector)."""
    state = services.registry.states.get(name)
    if state is None:
        known = ", ".join(services.registry.states)
        raise HTTPException(status_code=404, detail=f"no model {name!r}; models: {known}")
    return describe(services.registry, state)
