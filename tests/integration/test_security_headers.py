"""Security headers (api/platform/security_headers.py) on the real app, and the docs pages' switch.

The page's CSP is checked against what the page actually loads (its HTML and script) and the
docs' CSP against the URLs FastAPI's docs pages load; the e2e tests run the page under its CSP
in Chromium and fail on any violation.
"""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from api.inference.routes.page import STATIC_DIR
from api.platform.security_headers import DOCS_CSP, PAGE_CSP
from tests.integration.api_client import app_settings, db_app_settings, running_app

DOCS_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")
DOCS_PATHS = (*DOCS_PAGES, "/openapi.json")
PRODUCTION_SECRET = "s" * 48


def policy(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


class Resources(HTMLParser):
    """What an HTML page loads, and what in it a strict CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self.handlers: list[str] = []
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(values[name] or "")
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if "style" in values or tag == "style":
            self.inline_styles += 1
        self._in_script_without_src = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


def resources(html: str) -> Resources:
    parser = Resources()
    parser.feed(html)
    return parser


def test_the_page_gets_a_strict_csp_that_fits_it(exported_repository: Path) -> None:
    async def check() -> None:
        settings = app_settings(exported_repository, inference_backend="onnxruntime")
        async with running_app(settings) as (_, client):
            page = await client.get("/")
            assert page.status_code == 200
            assert page.headers["content-security-policy"] == PAGE_CSP
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert page.headers["x-content-type-options"] == "nosniff"
            csp = policy(PAGE_CSP)
            assert csp["default-src"] == ["'none'"]
            assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
            assert csp["connect-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]

            # Everything the page loads is same-origin, and nothing is inline.
            found = resources(page.text)
            assert found.urls and all(url.startswith("/assets/") for url in found.urls)
            assert (found.inline_scripts, found.inline_styles, found.handlers) == (0, 0, [])
            for url in found.urls:
                asset = await client.get(url)
                assert asset.status_code == 200, url
                assert asset.headers["x-content-type-options"] == "nosniff"
                assert "content-security-policy" not in asset.headers  # not HTML
            script = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
            # fetch() only to relative (same-origin) paths; the socket to the page's own host.
            assert re.findall(r"fetch\(\s*[\"'`](?!/)", script) == []
            assert "${location.host}" in script and "new WebSocket(" in script
            assert not re.search(r"\beval\(|new Function\(", script)

    asyncio.run(check())


def test_every_response_is_nosniff_and_docs_get_their_own_csp(tmp_path: Path) -> None:
    async def check() -> None:
        settings = db_app_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
        async with running_app(settings, inference=False) as (_, client):
            for path in ("/health/live", "/openapi.json", "/users/me", "/no-such-path"):
                reply = await client.get(path)
                assert reply.headers["x-content-type-options"] == "nosniff", path
                assert "content-security-policy" not in reply.headers, path
            assert (await client.get("/users/me")).status_code == 401
            allowed = policy(DOCS_CSP)
            assert allowed["frame-ancestors"] == ["'none'"]
            assert allowed["connect-src"] == ["'self'"]
            for path in DOCS_PAGES:
                reply = await client.get(path)
                assert reply.status_code == 200, path
                assert reply.headers["content-security-policy"] == DOCS_CSP, path
                assert reply.headers["x-frame-options"] == "DENY"
                assert reply.headers["referrer-policy"] == "no-referrer"
                assert reply.headers["x-content-type-options"] == "nosniff"
                # Each external file the page loads comes from an origin its CSP allows.
                for url in resources(reply.text).urls:
                    parts = urlsplit(url)
                    if not parts.scheme:
                        continue
                    origin = f"{parts.scheme}://{parts.netloc}"
                    kind = "script-src" if url.endswith(".js") else "style-src"
                    if url.endswith((".png", ".ico", ".svg")):
                        kind = "img-src"
                    assert origin in allowed[kind], (path, url, kind)
            swagger = (await client.get("/docs")).text
            assert '"validatorUrl": null' in swagger  # no badge from validator.swagger.io

    asyncio.run(check())


@pytest.mark.parametrize(
    ("overrides", "served"),
    [
        ({}, True),
        ({"docs_enabled": False}, False),
        ({"environment": "production", "secret_key": PRODUCTION_SECRET}, False),
        (
            {"environment": "production", "secret_key": PRODUCTION_SECRET, "docs_enabled": True},
            True,
        ),
    ],
    ids=["development-default", "turned-off", "production-default", "production-turned-on"],
)
def test_docs_can_be_turned_off(tmp_path: Path, overrides: dict[str, Any], served: bool) -> None:
    async def check() -> None:
        settings = db_app_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", **overrides)
        assert settings.docs_available is served
        async with running_app(settings, inference=False) as (_, client):
            statuses = {path: (await client.get(path)).status_code for path in DOCS_PATHS}
            assert statuses == dict.fromkeys(DOCS_PATHS, 200 if served else 404)
            # The API itself is there either way.
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/users/me")).status_code == 401

    asyncio.run(check())


SLASH_VARIANTS = (
    ("GET", "/models/"),
    ("GET", "/health/live/"),
    ("GET", "/users/me/"),
    ("GET", "/posts/"),
    ("POST", "/prediction/"),
    ("GET", "/docs/"),
    ("GET", "/assets"),
    ("GET", "/ws/detect/"),
)


def test_no_redirect_echoes_a_forged_host(exported_repository: Path) -> None:
    """Starlette's slash redirects build an absolute Location from the Host header; they are
    off, so a slash variant is a plain 404 (or 405) and no response names the forged host."""

    async def check() -> None:
        settings = app_settings(exported_repository, inference_backend="onnxruntime")
        async with running_app(settings) as (_, client):
            for method, path in SLASH_VARIANTS:
                for headers in ({"Host": "evil.example"}, {"X-Forwarded-Host": "evil.example"}):
                    reply = await client.request(method, path, headers=headers)
                    assert reply.status_code in (404, 405), (path, reply.status_code)
                    assert "location" not in reply.headers, (path, reply.headers)
                    assert "evil.example" not in reply.text, path
            # The routes themselves still answer at their own paths.
            assert (await client.get("/models", headers={"Host": "evil.example"})).is_success

    asyncio.run(check())
