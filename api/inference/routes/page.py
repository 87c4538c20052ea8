"""The detection page at ``/`` and its static files at ``/assets`` (no CDN: works offline)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.deps import SettingsDep

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@cache
def _template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
async def index(settings: SettingsDep) -> HTMLResponse:
    """The page, marked with whether inference needs a login."""
    html = _template().replace(
        "<body>", f'<body data-inference-auth="{settings.inference_auth}">', 1
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})
