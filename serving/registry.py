"""What the serving layer knows about each model: server-side state plus repository files.

The inference server says whether a model is ready, which versions it serves and its config;
the model repository (the same files the server loads) gives labels and the weights' provenance.
:meth:`ModelRegistry.refresh` re-reads both, so a restarted server or a new version is picked
up without restarting the API.

The version is what the prediction cache keys on, so it must never be stale: a version is
*confirmed* by a successful refresh and becomes unconfirmed when the server is unreachable
(a failed refresh, or an inference that found it down) or when an inference came back from
another version. An unconfirmed version is not used for cache lookups (:meth:`cache_version`)
until the next refresh, which comes sooner while anything is unconfirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from serving.client import InferenceClient, ModelInfo
from serving.errors import ServingError
from serving.model_config import config_path, load_model_config
from serving.model_repository import model_versions, read_labels, read_provenance

logger = logging.getLogger(__name__)


@dataclass
class ModelState:
    name: str
    info: ModelInfo | None = None
    labels: list[str] = field(default_factory=list)
    provenance: dict[str, Any] | None = None
    error: str | None = None
    confirmed: bool = False  # ``version`` is what the server serves (see the module doc)

    @property
    def ready(self) -> bool:
        return self.info is not None and self.info.ready and self.error is None

    @property
    def version(self) -> str | None:
        if self.info and self.info.versions:
            return max(self.info.versions, key=int)
        return None


class ModelRegistry:
    def __init__(
        self,
        client: InferenceClient,
        repository: Path,
        models: Sequence[str],
        config_name: str | None,
    ) -> None:
        self.client = client
        self.repository = repository
        self.config_name = config_name
        self.states = {name: ModelState(name) for name in models}
        for state in self.states.values():
            self._read_files(state)

    def local_config(self, model: str) -> dict[str, Any]:
        """The model's configuration as the repository holds it (the variant in use)."""
        model_dir = self.repository / model
        path = config_path(model_dir, self.config_name)
        if not path.exists():
            path = config_path(model_dir)
        return json_format.MessageToDict(load_model_config(path), preserving_proto_field_name=True)

    def max_batch_size(self, model: str) -> int:
        """From the server when it answered, else from the repository's config file."""
        info = self.states[model].info
        if info is not None:
            return info.max_batch_size
        return int(self.local_config(model).get("max_batch_size", 1))

    def cache_version(self, model: str) -> str | None:
        """The version to look cached results up under; None while it is unconfirmed."""
        state = self.states[model]
        return state.version if state.confirmed else None

    def unreachable(self, model: str) -> None:
        """An inference found the server unreachable: it may come back with another version."""
        self.states[model].confirmed = False

    def served(self, model: str, version: str) -> None:
        """An inference came back from ``version``; another than ours means a new one is out."""
        state = self.states[model]
        if version != state.version:
            state.confirmed = False

    @property
    def all_confirmed(self) -> bool:
        return all(state.confirmed for state in self.states.values())

    async def refresh(self) -> None:
        for name, state in self.states.items():
            previous = state.version
            try:
                state.info = await self.client.model_info(name)
                state.error = None if state.info.ready else "the model is not ready"
            except ServingError as error:
                state.error = str(error)
                state.confirmed = False
                continue
            state.confirmed = state.info.ready
            if state.version != previous or not state.labels:
                self._read_files(state)

    def _read_files(self, state: ModelState) -> None:
        model_dir = self.repository / state.name
        try:
            # In place: services hold this list, so a new version's labels reach them too.
            state.labels[:] = read_labels(model_dir)
        except OSError as error:
            state.error = f"no labels for {state.name} in {model_dir}: {error}"
            return
        versions = [int(state.version)] if state.version else model_versions(model_dir)[-1:]
        try:
            state.provenance = read_provenance(model_dir, versions[0]) if versions else None
        except OSError:
            state.provenance = None
        if state.version is not None:
            logger.info(
                "model %s version %s: %d labels", state.name, state.version, len(state.labels)
            )
