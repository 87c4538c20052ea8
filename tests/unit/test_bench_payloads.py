"""benchmarks.payloads: the exact bytes the load generator puts on the wire."""

from __future__ import annotations

import pytest

from benchmarks.payloads import (
    FilePart,
    RequestSpec,
    Rotation,
    get,
    post_bytes,
    post_json,
    post_multipart,
)


def test_get_has_no_body_and_no_length() -> None:
    encode = get("/noop", headers={"Authorization": "Bearer t"}).encoder("h:1")
    assert encode(0) == b"GET /noop HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer t\r\n\r\n"


def test_json_bodies_rotate_with_exact_lengths() -> None:
    encode = post_json("/prediction", [{"text": "a"}, {"text": "é"}]).encoder("h:1", "/api")
    first, second, third = encode(0), encode(1), encode(2)
    assert first == (
        b"POST /api/prediction HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 12\r\n\r\n{"text":"a"}'
    )
    assert second.endswith(b"Content-Length: 13\r\n\r\n" + '{"text":"é"}'.encode())
    assert third == first


def test_post_json_wants_a_sequence_of_documents() -> None:
    with pytest.raises(TypeError):
        post_json("/prediction", {"text": "a"})  # type: ignore[arg-type]


def test_multipart_boundary_never_occurs_in_the_files() -> None:
    spec = post_multipart("/object-detection", [FilePart("x.jpg", b"\x00" * 10, "image/jpeg")])
    assert spec.content_type is not None
    boundary = spec.content_type.split("boundary=")[1]
    body = spec.body(0) if spec.body else b""
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"--{boundary}--\r\n".encode())
    assert b'name="image"; filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n' in body


def test_body_factory_is_called_per_request() -> None:
    calls: list[int] = []

    def body(index: int) -> bytes:
        calls.append(index)
        return str(index).encode() * index

    encode = post_bytes("/x", body, "text/plain").encoder("h:1")
    assert encode(3).endswith(b"Content-Length: 3\r\n\r\n333")
    assert encode(0).endswith(b"Content-Length: 0\r\n\r\n")
    assert calls == [3, 0]


def test_specs_refuse_what_the_generator_controls() -> None:
    with pytest.raises(ValueError, match="content-length"):
        RequestSpec("GET", "/", headers={"Content-Length": "3"})
    with pytest.raises(ValueError, match="start with"):
        get("noop")
    with pytest.raises(ValueError):
        Rotation([])
