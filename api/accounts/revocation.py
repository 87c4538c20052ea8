"""Ending a user's live WebSocket streams when their credentials end (this worker's streams).

Streams in other workers notice within ``TRITONGATE_STREAM_REVALIDATE_S``: every stream
re-checks its credential periodically (see ``api/inference/streaming.py``). An app without the
inference services (the accounts and blog API alone) has no streams, and this does nothing.
"""

from __future__ import annotations

from fastapi import FastAPI


async def close_streams(
    app: FastAPI,
    reason: str,
    *,
    user_id: int | None = None,
    credential_hash: str | None = None,
) -> int:
    """Close this worker's streams of ``user_id`` (all of them) or those opened with the
    credential whose stored hash is ``credential_hash``; how many were closed."""
    services = getattr(app.state, "services", None)
    if services is None:
        return 0
    closed = 0
    if user_id is not None:
        closed += await services.streams.close_user(user_id, reason)
    if credential_hash is not None:
        closed += await services.streams.close_credential(credential_hash, reason)
    return closed
