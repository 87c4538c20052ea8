"""Security headers: ``X-Content-Type-Options: nosniff`` on every HTTP response, and on HTML
(the detection page, the docs pages) a Content-Security-Policy, ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``. A header the route set itself is left alone.

Two policies:

* :data:`PAGE_CSP` for the page at ``/`` (and any other HTML): only same-origin files
  (``/assets``), no inline script or style, ``connect-src 'self'`` for ``fetch`` and the
  same-origin WebSocket (CSP 3 lets ``'self'`` match ``ws:``/``wss:`` on the page's host),
  ``blob:``/``data:`` images, no plugins, no framing, no ``<base>``, forms only to ourselves.
  The camera's video is a ``MediaStream`` (``srcObject``), which ``media-src`` does not govern.
* :data:`DOCS_CSP` for ``/docs``, its OAuth2 redirect page and ``/redoc``: FastAPI's pages load
  Swagger UI and ReDoc from the jsDelivr CDN and start them with an inline script, and ReDoc
  loads Google Fonts and runs a ``blob:`` worker; the policy allows exactly that and nothing
  else (still no framing, ``connect-src 'self'``). It is weaker than the page's (inline scripts
  and styles): production deployments should turn the docs off (``TRITONGATE_DOCS_ENABLED``,
  off by default with ``TRITONGATE_ENVIRONMENT=production``).

Pure ASGI: it adds headers to ``http.response.start`` and does nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)
CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = "; ".join(
    (
        "default-src 'none'",
        f"script-src 'self' 'unsafe-inline' {CDN}",
        f"style-src 'self' 'unsafe-inline' {CDN} https://fonts.googleapis.com",
        "img-src 'self' data: blob: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "font-src 'self' https://fonts.gstatic.com",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)

_CSP = b"content-security-policy"
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_HTML_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, docs_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope["path"] in self.docs_paths else PAGE_CSP).encode("ascii")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {key.lower() for key, _ in headers}
                extra = [_NOSNIFF]
                content_type = next(
                    (value for key, value in headers if key.lower() == b"content-type"), b""
                )
                if content_type.lower().startswith(b"text/html"):
                    extra += [(_CSP, csp), *_HTML_HEADERS]
                # Each message is a fresh dict (as the other middlewares assume): set in place.
                message["headers"] = headers + [h for h in extra if h[0] not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)
