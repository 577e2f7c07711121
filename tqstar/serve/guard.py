"""Who may call the server, checked before any route (plain ASGI, so streaming is untouched): the API key
when one is set, else a loopback Host header.

Without a key, a page open in the user's browser can still send requests to 127.0.0.1 (a form post, or a
DNS name it rebinds to 127.0.0.1); the browser then sends that page's name as Host, which is refused here.
Its bodies cannot be JSON without a CORS preflight, which the app refuses by content type (415).
"""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse

from .config import LOOPBACK
from .protocol import ApiError


def error_response(exc: ApiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status == 429 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class RequireKey:
    """Refuse every request without ``Authorization: Bearer KEY``, but a GET of a ``public`` path (the
    playground's page and files, which hold no data)."""

    def __init__(self, app, key: str, public: frozenset[str] = frozenset()):
        self.app, self.expected, self.public = app, f"Bearer {key}".encode(), public

    async def __call__(self, scope, receive, send):
        verb = scope.get("method")  # the HTTP verb
        if scope["type"] == "http" and not (verb in ("GET", "HEAD") and scope["path"] in self.public):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                error = ApiError(401, "Missing or wrong API key. Send the header 'Authorization: Bearer KEY' with "
                                      "the key the server was started with (--api-key-file or TQSTAR_API_KEY).",
                                 None, "invalid_api_key", "authentication_error")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequireLocalHost:
    """Refuse a request whose Host header is neither a loopback name nor one of ``allowed``."""

    def __init__(self, app, allowed: list[str]):
        self.app, self.allowed = app, frozenset(LOOPBACK) | {name.lower() for name in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.allowed:
                error = ApiError(403, f"Host {header!r} is not served: without an API key only loopback names "
                                      f"({', '.join(sorted(self.allowed))}) are. Start the server with "
                                      "--allowed-hosts NAME for the name clients use, or with --api-key-file.",
                                 None, "host_not_allowed", "permission_error")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(header: str) -> str:
    """The name in a Host header, without its port: 'localhost:8000' → 'localhost', '[::1]:80' → '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    name, colon, port = header.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else header
