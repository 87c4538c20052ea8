"""Cache hit vs miss on ``POST /prediction`` (scenario 4): the bodies and the server's timing.

* **Misses**: every request carries a text never sent before: a document of the test split with
  a suffix naming the measurement and the request's index (`` #<tag>-<i>``), built when the
  request is encoded (a byte concatenation, no JSON encoding per request). The cache keys on the
  whole text, so each request misses.
* **Hits**: a small set of documents, each requested once to warm the cache, then repeated.

Every measured response is read by a :class:`ResponseTally`: ``X-Process-Time`` (seconds from the
request's arrival in the API to the start of its response, set by ``api/platform/middleware.py``)
is the
server time, and ``X-Cache`` (``hit`` or ``miss``) is counted, so the report can show that hits
were hits and misses were misses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from benchmarks.http11 import HttpResponse
from benchmarks.payloads import BodyFactory, Rotation, encode_json

PROCESS_TIME_HEADER: Final = "x-process-time"
CACHE_HEADER: Final = "x-cache"
NO_HEADER: Final = "absent"


def unique_bodies(texts: Sequence[str], tag: str) -> BodyFactory:
    """Body ``i``: ``{"text": texts[i % n] + " #<tag>-<i>"}``, distinct for every ``i``."""
    if not texts:
        raise ValueError("no texts to build bodies from")
    if '"' in tag or "\\" in tag:
        raise ValueError(f"the tag must not need JSON escaping: {tag!r}")
    # Each text's JSON encoding without its closing quote and brace: the suffix goes there.
    openings = [encode_json({"text": text})[:-2] for text in texts]
    count = len(openings)

    def body(index: int) -> bytes:
        return openings[index % count] + f' #{tag}-{index}"}}'.encode()

    return body


def repeated_bodies(texts: Sequence[str], count: int) -> Rotation:
    """The first ``count`` texts as bodies, for requests that repeat them."""
    if count < 1 or not texts:
        raise ValueError("need at least one text to repeat")
    return Rotation([encode_json({"text": text}) for text in texts[:count]])


@dataclass
class ResponseTally:
    """Server times (ms, from ``X-Process-Time``) and ``X-Cache`` values of measured responses."""

    server_ms: list[float] = field(default_factory=list)
    cache: Counter[str] = field(default_factory=Counter)

    def __call__(self, response: HttpResponse) -> None:
        if not 200 <= response.status < 300:
            return
        self.cache[(response.header(CACHE_HEADER) or NO_HEADER).lower()] += 1
        value = response.header(PROCESS_TIME_HEADER)
        if value is not None:
            self.server_ms.append(float(value) * 1000.0)

    def to_dict(self) -> dict[str, Any]:
        return {"x_cache": dict(sorted(self.cache.items())), "server_samples": len(self.server_ms)}
