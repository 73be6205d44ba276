"""Cross-origin use of the HTTP API (docs/http-binding.md, "Cross-origin use").

The web app's static bundle may be opened from any origin and talk to any gateway (issue 13),
and other WoT consumers run in browsers too. The API authenticates every request with a bearer
token the caller adds itself (never cookies or other ambient credentials), so letting any origin
call it gives a page nothing it could not do without a browser: `Access-Control-Allow-Origin: *`
without `Allow-Credentials`. Preflights (OPTIONS) are answered here, before routing, for the API
paths only; the web app (/app) and the status page stay same-origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

__all__ = ["API_PREFIXES", "enable_cors"]

#: Paths a cross-origin page may call (prefixes).
API_PREFIXES: Final = (
    "/things",
    "/.well-known/wot",
    "/acl",
    "/audit",
    "/status.json",
    "/status/id",
)
ALLOW_METHODS: Final = "GET, PUT, POST, HEAD"
ALLOW_HEADERS: Final = (
    "Authorization, Content-Type, Accept, Last-Event-ID, Streembit-Delegation"  # acl.md §6
)
EXPOSE_HEADERS: Final = "WWW-Authenticate, ETag"
PREFLIGHT_MAX_AGE_S: Final = 600  # browsers cache a preflight this long (Chromium caps at 2 h)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") or path.startswith(p + "?")
               for p in API_PREFIXES)  # fmt: skip


@web.middleware
async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a cross-origin preflight (OPTIONS) of an API path before routing."""
    if request.method != "OPTIONS" or "Origin" not in request.headers or not _api(request.path):
        return await handler(request)
    resp = web.Response(status=204)
    resp.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
    resp.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    resp.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    # Chromium's Private Network Access: a public page calling a LAN gateway asks first
    if request.headers.get("Access-Control-Request-Private-Network") == "true":
        resp.headers["Access-Control-Allow-Private-Network"] = "true"
    return resp


async def _readable(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Every API answer to a cross-origin request, streamed ones and errors included."""
    if "Origin" in request.headers and _api(request.path):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def enable_cors(app: web.Application) -> None:
    """Install the preflight middleware and the response header hook on APP (before start)."""
    app.middlewares.append(preflight)
    app.on_response_prepare.append(_readable)
