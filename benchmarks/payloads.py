"""What the load generator sends: request specifications encoded to raw HTTP/1.1 bytes.

A :class:`RequestSpec` is a method, a path, extra headers and an optional body factory
``index -> bytes`` called once per request with the request's sequence number, so inputs can rotate
over a list (:class:`Rotation`) or be produced by any function. :meth:`RequestSpec.encoder` turns a
spec into ``index -> bytes`` (request line, headers and body ready for the socket); for a rotation
every distinct message is rendered once up front, so sending costs no encoding at all.

Builders: :func:`get`, :func:`post_json` (JSON payloads), :func:`post_multipart` (files in a
``multipart/form-data`` body, as a browser uploads them), :func:`post_bytes` (any body factory).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BodyFactory = Callable[[int], bytes]
Encoder = Callable[[int], bytes]

_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class Rotation:
    """A body factory cycling over fixed bodies: request ``i`` gets ``bodies[i % len(bodies)]``."""

    def __init__(self, bodies: Sequence[bytes]) -> None:
        if not bodies:
            raise ValueError("a rotation needs at least one body")
        self.bodies: tuple[bytes, ...] = tuple(bytes(body) for body in bodies)

    def __call__(self, index: int) -> bytes:
        return self.bodies[index % len(self.bodies)]

    def __len__(self) -> int:
        return len(self.bodies)


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart upload."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class RequestSpec:
    """One kind of request; ``body`` is called with the request's index (``None``: no body)."""

    method: str
    path: str
    body: BodyFactory | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/': {self.path!r}")
        clashing = _FORBIDDEN_HEADERS.intersection(name.lower() for name in self.headers)
        if clashing:
            raise ValueError(f"headers set by the load generator itself: {sorted(clashing)}")

    def head(self, host: str, body_length: int | None, path_prefix: str = "") -> bytes:
        """Request line and headers (ending with the blank line) for a body of that length."""
        lines = [f"{self.method} {path_prefix}{self.path} HTTP/1.1", f"Host: {host}"]
        lines.extend(f"{name}: {value}" for name, value in self.headers.items())
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        if body_length is not None:
            lines.append(f"Content-Length: {body_length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def encoder(self, host: str, path_prefix: str = "") -> Encoder:
        """``index -> bytes``: the complete request message for the ``index``-th request."""
        factory = self.body
        if factory is None:
            message = self.head(host, None, path_prefix)
            return lambda _index: message
        if isinstance(factory, Rotation):
            rendered = tuple(
                self.head(host, len(body), path_prefix) + body for body in factory.bodies
            )
            count = len(rendered)
            return lambda index: rendered[index % count]

        def encode(index: int) -> bytes:
            body = factory(index)
            return self.head(host, len(body), path_prefix) + body

        return encode


def get(path: str, headers: Mapping[str, str] | None = None) -> RequestSpec:
    """A ``GET`` without a body."""
    return RequestSpec("GET", path, headers=dict(headers or {}))


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as HTTP clients usually send it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def post_json(
    path: str, payloads: Sequence[Any], headers: Mapping[str, str] | None = None
) -> RequestSpec:
    """A ``POST`` of JSON bodies rotating over ``payloads`` (one payload: ``[payload]``)."""
    if isinstance(payloads, Mapping | str | bytes):
        raise TypeError("payloads is a sequence of JSON documents; wrap a single one in a list")
    bodies = Rotation([encode_json(payload) for payload in payloads])
    return RequestSpec(
        "POST", path, body=bodies, content_type="application/json", headers=dict(headers or {})
    )


def multipart_body(parts: Mapping[str, FilePart | str], boundary: str) -> bytes:
    """A ``multipart/form-data`` body holding ``parts`` (files or plain text fields)."""
    chunks: list[bytes] = []
    for name, part in parts.items():
        chunks.append(f"--{boundary}\r\n".encode("ascii"))
        if isinstance(part, FilePart):
            chunks.append(
                f'Content-Disposition: form-data; name="{name}"; filename="{part.filename}"\r\n'
                f"Content-Type: {part.content_type}\r\n\r\n".encode()
            )
            chunks.append(part.content)
        else:
            chunks.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            chunks.append(part.encode("utf-8"))
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks)


def _boundary_for(contents: Sequence[bytes]) -> str:
    """A random boundary that occurs in none of ``contents``."""
    while True:
        boundary = f"tritongate-{secrets.token_hex(12)}"
        marker = boundary.encode("ascii")
        if not any(marker in content for content in contents):
            return boundary


def post_multipart(
    path: str,
    files: Sequence[FilePart],
    field_name: str = "image",
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> RequestSpec:
    """A ``POST`` uploading one file per request in ``field_name``, rotating over ``files``.

    ``fields`` adds the same plain form fields to every request. Bodies are built once here.
    """
    if not files:
        raise ValueError("post_multipart needs at least one file")
    boundary = _boundary_for([part.content for part in files])
    bodies = [multipart_body({field_name: part, **dict(fields or {})}, boundary) for part in files]
    return RequestSpec(
        "POST",
        path,
        body=Rotation(bodies),
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=dict(headers or {}),
    )


def post_bytes(
    path: str,
    body: BodyFactory,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> RequestSpec:
    """A ``POST`` whose body ``body(index)`` is computed when each request is sent."""
    return RequestSpec(
        "POST", path, body=body, content_type=content_type, headers=dict(headers or {})
    )
