"""A scripted ASGI ``receive`` for middleware unit tests: the body's parts, then the disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

Part = bytes | tuple[bytes, asyncio.Event | None]


class ScriptedReceive:
    """What a server's ``receive`` hands over: ``parts`` in order (a part given as
    ``(bytes, gate)`` comes once its gate is set; plain bytes come at once), then
    ``http.disconnect`` once ``gone`` is set. ``last=False`` leaves ``more_body`` true on the
    final part (a body the client never finishes). ``calls`` counts the reads."""

    def __init__(self, *parts: Part, last: bool = True) -> None:
        self.parts = [part if isinstance(part, tuple) else (part, None) for part in parts]
        self.last = last
        self.gone = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if not self.parts:
            await self.gone.wait()
            return {"type": "http.disconnect"}
        chunk, gate = self.parts.pop(0)
        if gate is not None:
            await gate.wait()
        more = bool(self.parts) or not self.last
        return {"type": "http.request", "body": chunk, "more_body": more}
