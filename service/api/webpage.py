"""The web page at `/`: plain HTML/JS/CSS from service/api/static (no build step, nothing from the network).

The page only talks to the JSON API under `v1/` relative to its own URL, so it also works behind a
proxy that mounts the service under a sub-path. A strict Content-Security-Policy keeps it offline:
scripts, styles and requests may only go to this origin (blob: for the downloaded overlay video).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
# The page is tiny and changes with each release: let browsers revalidate instead of caching stale JS.
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class _StaticFiles(StaticFiles):
    """StaticFiles whose responses carry the page's security and caching headers."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(_HEADERS)
        return response


def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


def favicon() -> FileResponse:
    """The page links static/favicon.svg; this answers browsers and tools that ask /favicon.ico anyway."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


def install_webpage(app: FastAPI) -> None:
    """`GET /` (the page), its assets under `/static/`, and `/favicon.ico`."""
    if not (STATIC_DIR / "index.html").is_file():
        raise RuntimeError(f"web page assets missing: {STATIC_DIR / 'index.html'} (broken install?)")
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)
    app.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
