"""The Reports and Dashboard pages: static HTML, JS and CSS under ``static/``.

The pages call the same analytics API as everyone else with the token the user
types once (kept in ``sessionStorage``, sent as ``Authorization``). Every
response carries a Content-Security-Policy without inline script or style and
without any other origin, so what gateways wrote (contact ids, summaries) can
only ever be text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

STATIC: Final = Path(__file__).resolve().parent / "static"
CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
}
PAGES: Final = {"/dashboard": "dashboard.html", "/reports": "reports.html"}


def _page(name: str) -> Handler:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})
    return handler


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the CSP and friends on every answer (JSON too)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def add_pages(app: web.Application) -> None:
    """Routes of the pages and their assets, plus the security headers."""
    app.router.add_get("/", home)
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(security_headers)
