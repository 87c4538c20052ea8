"""Slow and oversized clients against the real server (uvicorn with the API's protocol and
options, ``TRITONGATE_INFERENCE_AUTH=required``) and a real tritonserver, with short deadlines:

* slow bodies (headers and one byte of a declared 1,000) hold no inference slot: authenticated
  requests still get 200 while they are open, and each gets 408 (JSON ``detail``) and a closed
  connection at ``TRITONGATE_BODY_TIMEOUT_S``; other routes' bodies have the same deadline;
* one client address may have only ``TRITONGATE_MAX_RECEIVING_BODIES_PER_CLIENT`` inference
  bodies being received at once (more: 503 + Retry-After); other addresses are not affected
  (the test connects from several 127.0.0.0/8 addresses);
* a request head over ``TRITONGATE_MAX_HEADER_BYTES`` gets 431 and a closed connection, and a
  flood of header bytes costs the server no memory to speak of;
* partial heads get 408 and a closed connection at ``TRITONGATE_HEADER_TIMEOUT_S`` (from the
  connection, however slowly their bytes trickle in), silent connections a close.

``max_inference_requests`` is 12, so that the slow sockets would take every slot if slots were
still taken before the body is read (with the adaptive bound it depends on the throughput
measured in the last second: the attack found 141 of 145 requests refused with 12 sockets).
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.launcher import LocalTriton
from tests.helpers.memory import MIB, peak_rss_growth
from tests.integration.live_server import LiveServer, live_api

BODY_S = 5.0
HEAD_S = 2.0
MAX_HEADER_BYTES = 64 * 1024  # Settings.max_header_bytes' default
PER_CLIENT = 64  # Settings.max_receiving_bodies_per_client's default
SLOTS = 12
MARGIN_S = 2.5  # a loaded 2-core machine answers late by up to this much
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_api(
        triton,
        exported_repository,
        tmp_path_factory.mktemp("api"),
        inference_auth="required",
        max_inference_requests=SLOTS,
        body_timeout_s=BODY_S,
        header_timeout_s=HEAD_S,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def auth(server: LiveServer) -> dict[str, str]:
    """A real bearer token: a user registered and logged in through the API."""
    email = "slow-clients@example.com"
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        registered = client.post("/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        login = client.post("/token", data={"username": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _connect(server: LiveServer, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", server.port), timeout=30, source_address=(source, 0)
    )


def _slow_body(
    server: LiveServer, path: str, content_type: str, source: str = "127.0.0.1"
) -> socket.socket:
    """Headers and the first byte of a declared 1,000-byte body (a valid start: ``{`` of JSON,
    ``-`` of a multipart boundary), no credentials."""
    first = "-" if content_type.startswith("multipart/") else "{"
    connection = _connect(server, source)
    connection.sendall(
        f"POST {path} HTTP/1.1\r\nHost: tritongate\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: 1000\r\n\r\n{first}".encode()
    )
    return connection


def _read_to_close(connections: list[socket.socket], timeout: float) -> list[tuple[bytes, float]]:
    """Everything each connection receives until the server closes it (or ``timeout``), and
    when the close came (seconds from now; inf if it did not)."""
    started = time.monotonic()
    received = {c: b"" for c in connections}
    closed_at = dict.fromkeys(connections, float("inf"))
    with selectors.DefaultSelector() as selector:
        for connection in connections:
            connection.setblocking(False)
            selector.register(connection, selectors.EVENT_READ)
        while selector.get_map() and time.monotonic() - started < timeout:
            for key, _ in selector.select(timeout=0.1):
                connection = key.fileobj
                assert isinstance(connection, socket.socket)
                try:
                    chunk = connection.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[connection] += chunk
                    continue
                closed_at[connection] = time.monotonic() - started
                selector.unregister(connection)
    return [(received[c], closed_at[c]) for c in connections]


def _status(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer.split(b" ", 2)[1])


def _detail(answer: bytes) -> str:
    return json.loads(answer.partition(b"\r\n\r\n")[2])["detail"]


def _none_answered(connections: list[socket.socket]) -> bool:
    with selectors.DefaultSelector() as selector:
        for connection in connections:
            selector.register(connection, selectors.EVENT_READ)
        return not selector.select(timeout=0)


def test_slow_bodies_hold_no_slot_and_get_408_at_the_deadline(
    server: LiveServer, auth: dict[str, str], photos: list[Path]
) -> None:
    image = {"image": (photos[0].name, photos[0].read_bytes(), "image/jpeg")}
    multipart = "multipart/form-data; boundary=x"
    with contextlib.ExitStack() as stack:
        opened = time.monotonic()
        slow = [
            stack.enter_context(_slow_body(server, "/prediction", "application/json"))
            for _ in range(40)
        ] + [
            stack.enter_context(_slow_body(server, "/object-detection", multipart))
            for _ in range(12)
        ]
        time.sleep(0.5)  # the server has them all
        statuses: Counter[str] = Counter()
        with httpx.Client(base_url=server.base_url, headers=auth, timeout=10) as client:
            for i in range(20):
                reply = client.post("/prediction", json={"text": f"graphics card {i}"})
                statuses[f"text {reply.status_code}"] += 1
            for _ in range(5):
                reply = client.post("/object-detection", files=image)
                statuses[f"detection {reply.status_code}"] += 1
        authenticated_s = time.monotonic() - opened
        still_open = _none_answered(slow)
        answers = _read_to_close(slow, BODY_S + MARGIN_S + 5)
    waited = [opened_for + authenticated_s for _, opened_for in answers]
    codes = Counter(_status(answer) for answer, _ in answers)
    print(
        f"\n52 slow bodies open: authenticated {dict(statuses)} in {authenticated_s:.1f} s; "
        f"then the slow ones got {dict(codes)}, closed {min(waited):.1f}-{max(waited):.1f} s "
        f"after opening (deadline {BODY_S:.0f} s)"
    )
    assert statuses == {"text 200": 20, "detection 200": 5}
    assert authenticated_s < BODY_S and still_open, "the slow bodies were pending throughout"
    assert codes == {408: 52}
    assert {_detail(answer) for answer, _ in answers} == {
        f"request body not received within {BODY_S:g} s"
    }
    assert all(b"connection: close" in answer.lower() for answer, _ in answers)
    assert min(waited) >= BODY_S - 0.5 and max(waited) <= BODY_S + MARGIN_S


def test_other_routes_bodies_have_the_same_deadline(server: LiveServer) -> None:
    with _slow_body(server, "/register", "application/json") as connection:
        ((answer, closed_s),) = _read_to_close([connection], BODY_S + MARGIN_S + 5)
    status_line = answer.partition(b"\r\n")[0].decode()
    print(f"\nslow body to /register: {status_line}, closed after {closed_s:.1f} s")
    assert _status(answer) == 408 and b"connection: close" in answer.lower()
    assert _detail(answer) == f"request body not received within {BODY_S:g} s"
    assert b"x-request-id" in answer.lower()  # the app's own error response
    assert BODY_S - 0.5 <= closed_s <= BODY_S + MARGIN_S


def _response(connection: socket.socket) -> bytes:
    """One whole response (its head and ``Content-Length`` bytes of body)."""
    connection.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = connection.recv(65536)
        assert chunk, answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, answer
        body += chunk
    return head + b"\r\n\r\n" + body


def _header(answer: bytes, name: str) -> str | None:
    for line in answer.partition(b"\r\n\r\n")[0].decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def test_one_address_may_have_only_so_many_inference_bodies_being_received(
    server: LiveServer, auth: dict[str, str]
) -> None:
    text = json.dumps({"text": "a complete body"}).encode()
    request = (
        b"POST /prediction HTTP/1.1\r\nHost: tritongate\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(text)).encode() + b"\r\n\r\n" + text
    )

    def one_request(source: str) -> bytes:
        with _connect(server, source) as connection:
            connection.sendall(request)
            return _response(connection)

    with contextlib.ExitStack() as stack:
        for _ in range(PER_CLIENT):
            stack.enter_context(_slow_body(server, "/prediction", "application/json", "127.0.0.3"))
        time.sleep(0.5)
        refused = one_request("127.0.0.3")
        other = one_request("127.0.0.4")  # anonymous, from another address: read, then 401
        local = httpx.HTTPTransport(local_address="127.0.0.4")
        with httpx.Client(base_url=server.base_url, headers=auth, transport=local) as client:
            admitted = client.post("/prediction", json={"text": "another address"})
    time.sleep(0.5)  # the slow sockets are closed: their bodies are no longer being read
    local = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=server.base_url, headers=auth, transport=local) as client:
        again = client.post("/prediction", json={"text": "the same address, later"})
    print(
        f"\n{PER_CLIENT} slow bodies from 127.0.0.3: the next from there {_status(refused)} "
        f"({_detail(refused)!r}); from 127.0.0.4 {_status(other)} anonymous, "
        f"{admitted.status_code} authenticated; 127.0.0.3 once they closed: {again.status_code}"
    )
    assert _status(refused) == 503 and _header(refused, "retry-after") == "1"
    assert _detail(refused) == (
        "too many request bodies are being received from this address, retry shortly"
    )
    assert _status(other) == 401
    assert admitted.status_code == 200 and again.status_code == 200


def test_oversized_headers_get_431_and_a_flood_of_them_costs_no_memory(
    server: LiveServer,
) -> None:
    # One head just over the cap, sent at once: 431 with a JSON detail, then the close.
    with _connect(server) as connection:
        connection.sendall(
            b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Junk: "
            + b"a" * (MAX_HEADER_BYTES + 4096)
            + b"\r\n\r\n"
        )
        ((answer, closed_s),) = _read_to_close([connection], 10)
    assert _status(answer) == 431 and closed_s < 10
    assert _detail(answer) == f"request headers over the limit of {MAX_HEADER_BYTES} bytes"
    # Four clients each trying to send a 32 MiB header block.
    flood = 32 * MIB
    sent = [0] * 4
    cut = [False] * 4

    def send_flood(index: int) -> None:
        chunk = b"a" * (64 * 1024)
        with _connect(server) as connection:
            try:
                connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Junk: ")
                while sent[index] < flood:
                    connection.sendall(chunk)
                    sent[index] += len(chunk)
            except OSError:  # reset or broken pipe: the server closed the connection
                cut[index] = True

    with peak_rss_growth(server.process.pid) as growth:
        threads = [threading.Thread(target=send_flood, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    print(
        f"\n4 × {flood // MIB} MiB header blocks: cut after "
        f"{', '.join(f'{s / MIB:.1f}' for s in sent)} MiB sent; server peak RSS "
        f"+{growth.mib:.2f} MiB"
    )
    assert all(cut), "the server closed every flooding connection"
    assert growth.bytes < 16 * MIB, "the server did not keep what it was sent"
    assert httpx.get(f"{server.base_url}/health/live").status_code == 200


def test_partial_heads_get_408_and_silent_connections_a_close_within_the_deadline(
    server: LiveServer,
) -> None:
    stop = threading.Event()

    def trickle(connection: socket.socket) -> None:
        """A byte of a header every 0.3 s, until the server closes the connection."""
        with contextlib.suppress(OSError):
            connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n")
            while not stop.wait(0.3):
                connection.sendall(b"X")

    with contextlib.ExitStack() as stack:
        partial = [stack.enter_context(_connect(server)) for _ in range(300)]
        for connection in partial:
            connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        silent = [stack.enter_context(_connect(server)) for _ in range(20)]
        trickling = [stack.enter_context(_connect(server)) for _ in range(3)]
        threads = [threading.Thread(target=trickle, args=(c,)) for c in trickling]
        for thread in threads:
            thread.start()
        try:
            answers = _read_to_close(partial + silent + trickling, HEAD_S + MARGIN_S + 5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    partial_answers = answers[:300] + answers[320:]
    silent_answers = answers[300:320]
    closed = [closed_s for _, closed_s in answers]
    print(
        f"\n300 partial heads, 20 silent connections, 3 trickling a byte every 0.3 s: "
        f"{dict(Counter(_status(answer) for answer, _ in answers))}, closed "
        f"{min(closed):.1f}-{max(closed):.1f} s after (deadline {HEAD_S:.0f} s)"
    )
    assert {_status(answer) for answer, _ in partial_answers} == {408}
    assert {_detail(answer) for answer, _ in partial_answers} == {
        f"request headers not received within {HEAD_S:g} s"
    }
    assert {answer for answer, _ in silent_answers} == {b""}
    assert max(closed) <= HEAD_S + MARGIN_S and min(closed) >= HEAD_S - 0.5
    assert httpx.get(f"{server.base_url}/health/live").status_code == 200
