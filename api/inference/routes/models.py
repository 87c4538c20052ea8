"""What is served: ``GET /models`` and ``GET /models/{name}`` (public: no credentials).

The weights' provenance is shown in a public view: where the weights and data came from
(source, hub id and revision, seed, dataset name and sizes), accuracy, ``random_weights`` and
the export date. Host paths, file checksums and exact library versions stay in the repository's
``provenance.json``: they tell an attacker more than they tell a user.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from api.deps import ServicesDep
from api.inference.schemas import ModelDescription, ModelList, TensorInfo
from api.platform.responses import error_responses
from serving.registry import ModelRegistry, ModelState
from serving.specs import MODEL_SPECS, TensorSpec

router = APIRouter(tags=["models"])


# Top-level provenance entries shown to anyone: ``None`` for a scalar kept as is, else the
# fields kept from that object. Anything not listed is left out.
PUBLIC_PROVENANCE: dict[str, tuple[str, ...] | None] = {
    "exported_at": None,
    "random_weights": None,
    "note": None,
    "weights": ("source", "hub_id", "revision", "seed", "architecture"),
    "dataset": ("name", "kind", "categories", "train_documents", "test_documents"),
    "metrics": ("accuracy",),
}
_SCALARS = (str, bool, int, float)


def public_provenance(provenance: dict[str, Any] | None) -> dict[str, Any] | None:
    """The allow-listed part of ``provenance`` (``None`` when nothing is left)."""
    if not provenance:
        return None
    public: dict[str, Any] = {}
    for name, fields in PUBLIC_PROVENANCE.items():
        value = provenance.get(name)
        if fields is None:
            if isinstance(value, _SCALARS):
                public[name] = value
        elif isinstance(value, dict):
            kept = {field: value[field] for field in fields if field in value}
            if kept:
                public[name] = kept
    return public or None


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
        provenance=public_provenance(provenance),
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
