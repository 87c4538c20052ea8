"""Cache keys: model name + model version + tenant + a digest of the normalised input
(+ threshold).

The tenant is whose cache the entry is in: the authenticated user when inference needs
credentials (``api/inference/tenancy.py``), so one user's entries are never another's hits and
``X-Cache`` (or a hit's speed) tells nobody what someone else sent. ``None`` (inference open to
anyone: no tenants) is one cache shared by every caller.

"Normalised" means the validated input in one canonical byte form, not the raw request body:
two JSON bodies that parse to the same text (other whitespace, key order or escapes) share an
entry. The text itself is not altered (no case folding or Unicode normalisation): only inputs
the model sees as identical bytes are guaranteed the same answer, whatever a future version's
pre-processing does. Images are hashed as uploaded (no decode: a hit costs a hash). The
version is filled in at lookup time, so a new model version never sees an old entry.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

# Uploads larger than this are hashed in the thread pool rather than on the event loop.
HASH_IN_THREAD_BYTES = 256 * 1024


SHARED = "shared"  # the scope of entries with no tenant (never a user's: those are "user-<id>")


def tenant_scope(tenant: str | None) -> str:
    return SHARED if tenant is None else f"user-{tenant}"


@dataclass(frozen=True)
class CacheKey:
    model: str
    kind: str  # "text", "texts" or "image": an endpoint's own namespace
    digest: str
    tenant: str | None = None  # whose entry (None: shared by every caller)

    def for_version(self, version: str) -> str:
        return f"{self.model}:{version}:{tenant_scope(self.tenant)}:{self.kind}:{self.digest}"


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def text_key(model: str, text: str, tenant: str | None = None) -> CacheKey:
    return CacheKey(model, "text", hashlib.sha256(_utf8(text)).hexdigest(), tenant)


def texts_key(model: str, texts: Sequence[str], tenant: str | None = None) -> CacheKey:
    """One key for a whole batch, in order (length-prefixed, so boundaries cannot shift)."""
    digest = hashlib.sha256()
    for text in texts:
        data = _utf8(text)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return CacheKey(model, "texts", digest.hexdigest(), tenant)


def image_key(model: str, data: bytes, threshold: float, tenant: str | None = None) -> CacheKey:
    digest = hashlib.sha256(data).hexdigest()
    return CacheKey(model, "image", f"{digest}:{float(threshold)!r}", tenant)


async def image_key_off_loop(
    model: str,
    data: bytes,
    threshold: float,
    executor: Executor | None,
    tenant: str | None = None,
) -> CacheKey:
    """:func:`image_key`, in ``executor`` for large uploads (hashing 10 MiB takes ~20 ms)."""
    if len(data) <= HASH_IN_THREAD_BYTES:
        return image_key(model, data, threshold, tenant)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, image_key, model, data, threshold, tenant)
