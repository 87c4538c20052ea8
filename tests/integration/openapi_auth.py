"""The protected operations of an app, read from its OpenAPI schema, and a check that each
refuses a request with given credentials."""

from __future__ import annotations

import re
from typing import Any

import httpx

PATH_PARAMETER = re.compile(r"\{[^}]+\}")


def operations(schema: dict[str, Any], *, protected: bool) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every operation that declares security (or that does not)."""
    found = set()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if bool(operation.get("security")) == protected:
                found.add((method.upper(), path))
    return found


async def refusals(
    client: httpx.AsyncClient,
    protected: set[tuple[str, str]],
    *,
    expected: int,
    headers: dict[str, str] | None = None,
) -> dict[tuple[str, str], int]:
    """The operations that did *not* answer ``expected`` (with the status they gave)."""
    wrong = {}
    for method, path in sorted(protected):
        url = PATH_PARAMETER.sub("1", path)
        reply = await client.request(method, url, headers=headers)
        if reply.status_code != expected:
            wrong[(method, path)] = reply.status_code
        elif expected == 401:
            assert reply.headers.get("www-authenticate") == "Bearer", (method, path)
    return wrong
