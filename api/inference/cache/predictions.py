"""The prediction cache in front of the batcher: a hit is the stored response body, as is.

A lookup uses the model version the registry reads from Triton, and none while that version is
unconfirmed (Triton was unreachable, or an inference came back from another version: a restarted
Triton may serve a new one), so a new version never gets the old version's results; a computed
response is stored under the version that actually produced it. Only successful responses are
stored (errors never are). A hit skips everything after validation: no batcher, no Triton, no
image decode, not even response serialisation. Responses carry ``X-Cache: hit`` or ``miss``;
with the cache disabled they carry no ``X-Cache`` header. Entries are per tenant (the key's
``tenant``, the authenticated user: ``api/inference/tenancy.py``), so a hit only ever answers a
request of the user whose request stored it; with inference open to anyone, one shared cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from fastapi import Response
from pydantic import BaseModel

from api.inference.cache.guard import GuardedCache
from api.inference.cache.keys import CacheKey
from serving.errors import InferenceUnavailableError

CACHE_HEADER = "X-Cache"
JSON = "application/json"


class ModelVersions(Protocol):
    """Which model version results are cached under (:class:`serving.registry.ModelRegistry`)."""

    def cache_version(self, model: str) -> str | None: ...

    def unreachable(self, model: str) -> None: ...

    def served(self, model: str, version: str) -> None: ...


Computation = Callable[[], Awaitable[tuple[BaseModel, str]]]  # (response body, model version)


class PredictionCache:
    def __init__(self, store: GuardedCache | None, versions: ModelVersions) -> None:
        self.store = store
        self.versions = versions

    @property
    def enabled(self) -> bool:
        return self.store is not None

    @property
    def backend_name(self) -> str:
        return self.store.backend.name if self.store is not None else "disabled"

    async def respond(self, key: CacheKey | None, compute: Computation) -> Response:
        """The cached response for ``key``, else ``compute()``'s, stored for next time
        (``key=None``: the cache is disabled and the caller did not compute one)."""
        if self.store is None or key is None:
            output, _ = await compute()
            return Response(output.model_dump_json().encode(), media_type=JSON)
        version = self.versions.cache_version(key.model)
        if version is not None:
            cached = await self.store.get(key.model, key.for_version(version))
            if cached is not None:
                return Response(cached, media_type=JSON, headers={CACHE_HEADER: "hit"})
        else:
            self.store.observer.miss(key.model)
        try:
            output, produced_by = await compute()
        except InferenceUnavailableError:
            self.versions.unreachable(key.model)
            raise
        self.versions.served(key.model, produced_by)
        body = output.model_dump_json().encode()
        await self.store.set(key.for_version(produced_by), body)
        return Response(body, media_type=JSON, headers={CACHE_HEADER: "miss"})

    async def clear(self) -> None:
        if self.store is not None:
            await self.store.clear()

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
