"""Schemathesis against the app's own OpenAPI schema, authenticated, through a real tritonserver.

The real app (lifespan included, ``inference_auth="required"``, on SQLite and on PostgreSQL when
``TEST_DATABASE_URL`` is set) is served by uvicorn on the loopback interface; the schema is read
from its ``/openapi.json``. Every operation gets positive and negative cases (Hypothesis,
derandomized: the same cases every run), sent with a bearer token: a user registered through
``/register`` and ``/token``, or an admin's for the admin routes. The protected operations get a
few more cases with a token the app never issued. Every response must pass ``not_a_server_error``,
the conformance checks (status code, content type, headers and body against the declared
schema) and ``negative_data_rejection`` (a request that violates the schema is refused).

Credentials that a case can end are handled, not excluded:

* ``POST /logout`` revokes the token it is sent with, so each of its cases gets a fresh token of
  the same user;
* ``DELETE /users/{user_id}/tokens`` (admin) revokes every token and API key of whichever user
  the fuzzer names, the test accounts included, and ``DELETE /users/me/tokens`` (sign out
  everywhere) every token of the user, so both accounts get new tokens after each of their cases;
* ``PATCH /users/{user_id}`` (admin) may deactivate or promote whichever user the fuzzer names
  (the admin cannot deactivate or demote itself: 400), so after each of its cases both accounts
  get their status back (user: active, not an admin; admin: active admin) and new tokens;
* ``PATCH /users/me`` with a new password revokes the user's *other* tokens (never the one it is
  sent with, which is the one the later cases use); it needs the current password, which the
  fuzzer never guesses (403, then 429 once the account's failed attempts are used up);
* there is no ``DELETE /users/me``; ``DELETE /users/me/api-keys/{id}`` removes keys, which these
  cases do not authenticate with.

After each operation both accounts must still be authenticated, and no authenticated case of a
protected operation may have been refused with 401, so no case went out with dead credentials
unnoticed. Exclusions: none. Not in the schema, so not fuzzed here: the WebSocket routes
(tests/integration/test_stream.py), ``/metrics`` (test_metrics.py) and the page at ``/`` (the
e2e tests).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
import schemathesis
import uvicorn
from anyio.from_thread import BlockingPortal
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.accounts.crud import users as users_crud
from api.config import Settings
from serving.launcher import LocalTriton, TritonPorts
from tests.integration.accounts import PASSWORD, issue_token, make_account
from tests.integration.api_client import app_settings, running_app

# About 35 s per database on 2 cores (plus the shared export and tritonserver).
pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
MIN_CASES = 1_000

# Examples per operation and generation mode. Operations with a small input space (no
# parameters) end sooner: Hypothesis stops once it has tried everything it can generate.
DEFAULT_EXAMPLES = 50
# These hash or verify a password with argon2 (~0.1 s of CPU each): fewer examples.
EXAMPLES = {
    "POST /register": 20,
    "POST /token": 20,
    "POST /login": 20,
    "PATCH /users/me": 20,
}
ADMIN_OPERATIONS = {"DELETE /users/{user_id}/tokens", "DELETE /cache", "PATCH /users/{user_id}"}
# Each case revokes the token it is sent with.
FRESH_TOKEN_OPERATIONS = {"POST /logout"}
# A case may revoke the test accounts' tokens: both get new ones after each case.
REVOKING_OPERATIONS = {"DELETE /users/{user_id}/tokens", "DELETE /users/me/tokens"}
# A case may deactivate, promote or demote a test account: their status is restored (and both
# get new tokens) after each case.
STATUS_OPERATIONS = {"PATCH /users/{user_id}"}


@dataclass
class Credentials:
    """The two test accounts and their current bearer tokens."""

    user_id: int
    admin_id: int
    user_token: str
    admin_token: str

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@dataclass
class Stack:
    app: FastAPI
    base_url: str
    portal: BlockingPortal
    credentials: Credentials = field(init=False)

    def issue(self, user_id: int) -> str:
        return self.portal.call(issue_token, self.app, user_id, timedelta(hours=1))

    def renew(self) -> None:
        self.credentials.user_token = self.issue(self.credentials.user_id)
        self.credentials.admin_token = self.issue(self.credentials.admin_id)

    def restore(self) -> None:
        """The test accounts' status as it was (a deactivation also revoked their tokens)."""
        credentials = self.credentials
        self.portal.call(_set_status, self.app, credentials.user_id, False)
        self.portal.call(_set_status, self.app, credentials.admin_id, True)
        self.renew()


async def _set_status(app: FastAPI, user_id: int, is_admin: bool) -> None:
    async with app.state.database.sessions() as session:
        user = await users_crud.get_user(session, user_id)
        assert user is not None
        await users_crud.update_status(session, user, is_active=True, is_admin=is_admin)


@contextlib.contextmanager
def served(config: Settings) -> Iterator[Stack]:
    """``running_app`` (the lifespan) in a portal's event loop, served by uvicorn there too."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_app(config)) as (app, _),
    ):
        port = TritonPorts.free().http
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
        )
        serving = portal.start_task_soon(server.serve)
        deadline = time.monotonic() + 30
        while not server.started:
            if serving.done() or time.monotonic() > deadline:
                serving.result(timeout=0)
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        try:
            yield Stack(app, f"http://127.0.0.1:{port}", portal)
        finally:
            server.should_exit = True
            serving.result(timeout=30)


def _register(base_url: str) -> tuple[int, str]:
    """A user through the real ``/register`` and ``/token``."""
    email = "fuzzer@example.com"
    with httpx.Client(base_url=base_url) as client:
        created = client.post("/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        token = client.post("/token", data={"username": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return created.json()["id"], token.json()["access_token"]


def _still_authenticated(stack: Stack) -> dict[str, int]:
    credentials = stack.credentials
    statuses = {}
    with httpx.Client(base_url=stack.base_url) as client:
        for name, token in (("user", credentials.user_token), ("admin", credentials.admin_token)):
            reply = client.get("/users/me", headers=credentials.headers(token))
            statuses[name] = reply.status_code
    return statuses


def _image_bytes(draw: Callable[[Any], Any]) -> bytes:
    """A small real image (JPEG, PNG or WebP), sometimes truncated."""
    width = draw(st.integers(1, 96))
    height = draw(st.integers(1, 96))
    kind = draw(st.sampled_from(["JPEG", "PNG", "WEBP"]))
    colour = tuple(draw(st.integers(0, 255)) for _ in range(3))
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=kind)
    data = buffer.getvalue()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


def _with_real_images(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Half the /object-detection cases upload a real (or truncated) image instead of the
    generated bytes, so the decoder and the model see valid input too."""

    @st.composite
    def cases(draw: Callable[[Any], Any]) -> Any:
        case = draw(strategy)
        if isinstance(case.body, dict) and "image" in case.body and draw(st.booleans()):
            case.body["image"] = _image_bytes(draw)
        return case

    return cases()


@dataclass(frozen=True)
class Pass:
    """One way of sending an operation's cases."""

    name: str
    mode: GenerationMode
    authenticated: bool = True


PASSES = (
    Pass("positive", GenerationMode.POSITIVE),
    Pass("negative", GenerationMode.NEGATIVE),
    # The protected operations once more, with a token the app never issued: the refusals
    # (401, or 400/422 for a body that fails before authentication) must match the schema too.
    Pass("invalid token", GenerationMode.POSITIVE, authenticated=False),
)
INVALID_TOKEN_EXAMPLES = 5


@dataclass
class Outcome:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    # (operation, pass) where Hypothesis found nothing to generate: no negative case exists
    # for an operation without inputs.
    impossible: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def count(self, label: str, name: str, status: int) -> None:
        self.cases[label] += 1
        self.statuses[(label, name, status)] += 1

    def unauthorized(self, name: str) -> dict[str, int]:
        return {
            op: n for (op, p, status), n in self.statuses.items() if p == name and status == 401
        }


def _is_protected(operation: Any) -> bool:
    return bool(operation.definition.raw.get("security"))


def _fuzz(stack: Stack, operation: Any, how: Pass, outcome: Outcome) -> None:
    label = operation.label
    credentials = stack.credentials
    strategy = operation.as_strategy(generation_mode=how.mode)
    if operation.path == "/object-detection" and how.mode == GenerationMode.POSITIVE:
        strategy = _with_real_images(strategy)
    examples = EXAMPLES.get(label, DEFAULT_EXAMPLES)
    if not how.authenticated:
        examples = INVALID_TOKEN_EXAMPLES

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        if not how.authenticated:
            token = "not-a-token-the-app-issued"
        elif label in FRESH_TOKEN_OPERATIONS:
            token = stack.issue(credentials.user_id)
        elif label in ADMIN_OPERATIONS:
            token = credentials.admin_token
        else:
            token = credentials.user_token
        headers = credentials.headers(token)
        try:
            response = case.call(base_url=stack.base_url, headers=headers, timeout=60)
        finally:
            if label in STATUS_OPERATIONS:
                stack.restore()
            elif label in REVOKING_OPERATIONS:
                stack.renew()
        outcome.count(label, how.name, response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    except Unsatisfiable:
        outcome.impossible.append(f"{label} [{how.name}]")
    except (Exception, BaseExceptionGroup) as error:
        outcome.failures[f"{label} [{how.name}]"] = _describe(error)


def _describe(error: BaseException) -> str:
    """Schemathesis' report of a failure, with Hypothesis' notes (the falsifying case)."""
    if isinstance(error, FailureGroup):
        text = str(error)
    elif isinstance(error, BaseExceptionGroup):
        text = "\n".join(_describe(inner) for inner in error.exceptions)
    else:
        text = f"{type(error).__name__}: {error}"
    notes = getattr(error, "__notes__", [])
    return "\n".join([text, *notes])


def _report(outcome: Outcome, operations: int, elapsed: float) -> None:
    total = sum(outcome.cases.values())
    print(f"\nschemathesis: {total} cases over {operations} operations in {elapsed:.0f} s")
    for label, count in sorted(outcome.cases.items()):
        codes = Counter[int]()
        for (op, _, status), n in outcome.statuses.items():
            if op == label:
                codes[status] += n
        print(f"  {label}: {count} cases, statuses {dict(sorted(codes.items()))}")
    print(f"  no negative case possible: {', '.join(outcome.impossible) or 'none'}")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    triton: LocalTriton, exported_repository: Path, database_url: str
) -> None:
    config = app_settings(
        exported_repository,
        triton_url=triton.grpc_url,
        inference_auth="required",
        database_url=database_url,
    )
    outcome = Outcome()
    started = time.monotonic()
    with served(config) as stack:
        user_id, user_token = _register(stack.base_url)
        admin = stack.portal.call(lambda: make_account(stack.app, admin=True, stem="admin"))
        stack.credentials = Credentials(user_id, admin.id, user_token, admin.token)
        schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        protected = {op.label for op in operations if _is_protected(op)}
        for operation in operations:
            for how in PASSES:
                if how.authenticated or operation.label in protected:
                    _fuzz(stack, operation, how, outcome)
            statuses = _still_authenticated(stack)
            assert statuses == {"user": 200, "admin": 200}, (operation.label, statuses)
    elapsed = time.monotonic() - started

    _report(outcome, len(operations), elapsed)
    assert not outcome.failures, "\n\n".join(f"{k}:\n{v}" for k, v in outcome.failures.items())
    # The inference endpoints are protected (inference_auth="required"), and so is the blog's
    # writing: the authenticated cases reached the handlers, the others were refused.
    assert {"POST /prediction", "POST /object-detection", "POST /posts"} <= protected
    refused = {**outcome.unauthorized("positive"), **outcome.unauthorized("negative")}
    assert not protected & set(refused), refused  # (/token and /login: wrong passwords)
    assert set(outcome.unauthorized("invalid token")) == protected
    assert len(operations) >= 25
    assert sum(outcome.cases.values()) >= MIN_CASES
