"""The detection page in a real headless Chromium with a fake camera, against the real stack
(uvicorn + local tritonserver): log in, stream, see boxes; upload a photo, see boxes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.launcher import LocalTriton
from tests.integration.api_client import app_settings
from tests.integration.live_server import LiveServer, live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EMAIL = "viewer@example.com"
PASSWORD = "correct horse battery staple"
BOX_GREEN = (0x49, 0xFB, 0x35)

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (make test installs Debian's chromium)"
)

# Counts the overlay pixels drawn in the box colour.
COUNT_GREEN = """(args) => {
  const [id, red, green, blue] = args;
  const canvas = document.getElementById(id);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] === red && data[i + 1] === green && data[i + 2] === blue && data[i + 3] > 0) {
      count++;
    }
  }
  return count;
}"""

# Records the page's Content-Security-Policy violations (a refused script, style, image,
# fetch or WebSocket) in window.cspViolations, from before any of the page's own scripts run.
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def server(
    triton: LocalTriton, exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = app_settings(
        exported_repository, triton_url=triton.grpc_url, inference_auth="required"
    )
    with live_server(settings, tmp_path_factory.mktemp("api")) as running:
        reply = httpx.post(
            f"{running.base_url}/register", json={"email": EMAIL, "password": PASSWORD}
        )
        assert reply.status_code == 201, reply.text
        yield running


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(viewport={"width": 1000, "height": 900})
        context.add_init_script(RECORD_CSP_VIOLATIONS)
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
        try:
            yield page
        finally:
            page.screenshot(path=str(tmp_path / "final.png"))
            print(f"\nscreenshots in {tmp_path}; console: {messages[-10:]}")
            context.close()
            browser.close()


def _wait_for(page: Any, expression: str, timeout_s: float = 30.0) -> None:
    """``page.wait_for_function`` without ``eval``: Playwright's polls its predicate through
    ``eval`` inside the page, which the page's CSP (no 'unsafe-eval') refuses;
    ``page.evaluate`` goes through the DevTools protocol and is not subject to it."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s} s: {expression}")
        page.wait_for_timeout(100)


def _log_in(page: Any, server: LiveServer) -> None:
    response = page.goto(server.base_url)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#login-email", EMAIL)
    page.fill("#login-password", PASSWORD)
    page.click("#button-login")
    page.wait_for_selector("#app:not([hidden])")
    assert page.text_content("#user-email") == EMAIL


def test_stream_from_the_fake_camera_draws_boxes(
    page: Any, server: LiveServer, tmp_path: Path
) -> None:
    _log_in(page, server)
    _wait_for(page, "document.getElementById('camera-select').options.length > 0")
    page.eval_on_selector(
        "#threshold", "(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }"
    )
    page.click("#button-start")
    _wait_for(page, "Number(document.getElementById('stat-objects').textContent) > 0")
    _wait_for(page, "Number(document.getElementById('stat-fps').textContent) > 0")
    green = page.evaluate(COUNT_GREEN, ["canvas", *BOX_GREEN])
    page.screenshot(path=str(tmp_path / "stream.png"))
    assert green > 100, "boxes are drawn on the overlay canvas"
    assert page.text_content("#stat-rtt") != "–"
    page.click("#button-stop")
    page.wait_for_selector("#button-start:not([disabled])")
    assert page.evaluate("window.cspViolations") == []


def test_photo_upload_shows_detections(
    page: Any, server: LiveServer, photos: list[Path], tmp_path: Path
) -> None:
    _log_in(page, server)
    page.eval_on_selector(
        "#threshold", "(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }"
    )
    page.click("#tab-photo")
    page.set_input_files("#photo-input", str(photos[0]))
    page.click("#button-detect")
    _wait_for(page, "document.getElementById('photo-status').textContent.includes('object')")
    status = page.text_content("#photo-status")
    page.screenshot(path=str(tmp_path / "photo.png"))
    assert "Error" not in status, status
    assert page.locator("#photo-objects li").count() > 0
    assert page.evaluate(COUNT_GREEN, ["photo-canvas", *BOX_GREEN]) > 100
    assert page.evaluate("window.cspViolations") == []


def test_page_without_login_shows_the_login_form(page: Any, server: LiveServer) -> None:
    page.goto(server.base_url)
    page.wait_for_selector("#login:not([hidden])")
    assert page.is_hidden("#app")
    assert page.evaluate("window.cspViolations") == []


def test_the_browser_enforces_the_pages_csp(page: Any, server: LiveServer) -> None:
    """The control for the violation checks above: a foreign script is refused, and seen."""
    page.goto(server.base_url)
    page.wait_for_selector("#login:not([hidden])")
    page.evaluate(
        """() => {
          const script = document.createElement('script');
          script.src = 'https://cdn.example.invalid/evil.js';
          document.head.appendChild(script);
        }"""
    )
    _wait_for(page, "window.cspViolations.length > 0")
    assert page.evaluate("window.cspViolations") == [
        "script-src-elem https://cdn.example.invalid/evil.js"
    ]
