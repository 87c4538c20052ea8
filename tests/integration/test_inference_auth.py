"""Who may call the inference endpoints: with TRITONGATE_INFERENCE_AUTH=required (the default)
a bearer token, the login cookie with its CSRF header, or an API key; with "open", anyone.
In-process ONNX Runtime serves the models (no tritonserver needed)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from api.accounts.csrf import CSRF_HEADER
from tests.integration.accounts import PASSWORD, issue_api_key, issue_token, make_account
from tests.integration.api_client import app_settings, running_app
from tests.integration.openapi_auth import operations, refusals

TEXT = {"text": "computer cpu memory ram"}
INFERENCE = {("POST", "/prediction"), ("POST", "/prediction/batch"), ("POST", "/object-detection")}
PUBLIC_GETS = ("/health/live", "/health/ready", "/models", "/models/newsgroups", "/docs")


def test_inference_requires_credentials_by_default(
    exported_repository: Path, photos: list[Path]
) -> None:
    async def check() -> None:
        settings = app_settings(
            exported_repository, inference_backend="onnxruntime", inference_auth="required"
        )
        async with running_app(settings) as (app, client):
            schema = (await client.get("/openapi.json")).json()
            protected = operations(schema, protected=True)
            assert protected >= INFERENCE
            for path in PUBLIC_GETS:
                assert (await client.get(path)).status_code == 200, path
            account = await make_account(app)
            expired = await issue_token(app, account.id, timedelta(seconds=-1))
            revoked = await issue_token(app, account.id, timedelta(hours=1))
            revoked_headers = {"Authorization": f"Bearer {revoked}"}
            assert (await client.post("/logout", headers=revoked_headers)).status_code == 204
            assert await refusals(client, protected, expected=401) == {}
            for headers in ({"Authorization": f"Bearer {expired}"}, revoked_headers):
                assert await refusals(client, protected, expected=401, headers=headers) == {}

            key = await issue_api_key(app, account.id)
            for headers in (account.headers, {"X-API-Key": key}):
                reply = await client.post("/prediction", json=TEXT, headers=headers)
                assert reply.status_code == 200, reply.text
                batch = await client.post(
                    "/prediction/batch", json={"texts": [TEXT["text"]]}, headers=headers
                )
                assert batch.status_code == 200
                image = photos[0]
                detected = await client.post(
                    "/object-detection",
                    files={"image": (image.name, image.read_bytes(), "image/jpeg")},
                    headers=headers,
                )
                assert detected.status_code == 200, detected.text

            login = await client.post("/login", data={"email": account.email, "password": PASSWORD})
            csrf = login.json()["csrf_token"]
            assert (await client.post("/prediction", json=TEXT)).status_code == 403
            by_cookie = await client.post("/prediction", json=TEXT, headers={CSRF_HEADER: csrf})
            assert by_cookie.status_code == 200, by_cookie.text

    asyncio.run(check())


def test_open_inference_needs_no_credentials(exported_repository: Path) -> None:
    async def check() -> None:
        settings = app_settings(
            exported_repository, inference_backend="onnxruntime", inference_auth="open"
        )
        async with running_app(settings) as (_, client):
            schema = (await client.get("/openapi.json")).json()
            assert not INFERENCE & operations(schema, protected=True)
            reply = await client.post("/prediction", json=TEXT)
            assert reply.status_code == 200, reply.text
            # The accounts API is there all the same.
            assert (await client.get("/users/me")).status_code == 401

    asyncio.run(check())
