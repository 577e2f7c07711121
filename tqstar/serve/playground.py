"""The playground at ``/``: a page that runs methods side by side through this server's own API and opens
each token in the token inspector (``tqstar/audit/static``). The page and its files hold no data, so they
are served without the API key (a browser cannot send one when it opens a URL); the page asks for the key
once, keeps it for the tab, and sends it with every API call, which the key still guards. The Host check
applies to the page as to the API."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

from ..audit.page import STATIC as INSPECTOR
from .protocol import ApiError

#: The page's files: name → (folder, media type). Nothing else is served from /static.
FILES = {"inspector.js": (INSPECTOR, "text/javascript"), "inspector.css": (INSPECTOR, "text/css"),
         "playground.js": (resources.files(__package__) / "static", "text/javascript"),
         "playground.css": (resources.files(__package__) / "static", "text/css")}
#: Paths a GET may fetch without the key.
PUBLIC = frozenset({"/", *(f"/static/{name}" for name in FILES)})
#: Only the page's own files run, and it talks only to this server; no other site may frame it.
HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                      "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def add_playground(app: FastAPI) -> None:
    page = (resources.files(__package__) / "static" / "playground.html").read_text(encoding="utf-8")

    @app.get("/")
    async def playground():
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in FILES:
            raise ApiError(404, f"GET /static/{name}: no such file. The playground is at /.", None, "not_found")
        folder, kind = FILES[name]
        return Response((folder / name).read_text(encoding="utf-8"), media_type=f"{kind}; charset=utf-8",
                        headers=HEADERS)
