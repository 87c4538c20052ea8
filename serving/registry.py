"""What the serving layer knows about each model: server-side state plus repository files.

The inference server says whether a model is ready, which versions it serves and its config;
the model repository (the same files the server loads) gives labels and the weights' provenance.
:meth:`ModelRegistry.refresh` re-reads both, so a restarted server or a new version is picked
up without restarting the API.
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

    async def refresh(self) -> None:
        for name, state in self.states.items():
            previous = state.version
            try:
                state.info = await self.client.model_info(name)
                state.error = None if state.info.ready else "the model is not ready"
            except ServingError as error:
                state.error = str(error)
                continue
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
