"""The phone web app (gateway/webapp/dist/, built by `npm run build`) served at /app.

  GET /app, /app/          index.html
  GET /app/{file}          one file of an allow-list, with its fixed content type

Nothing else is served: a name outside the allow-list (a traversal attempt included) is 404,
and no directory is ever listed. The files are read once at start (each at most MAX_FILE_BYTES),
so a rebuilt app is served after a restart. Every answer carries a strict CSP (no inline script
or style, no third-party origin), `nosniff`, no referrer, and `Cache-Control: no-cache` with an
ETag: a phone revalidates cheaply (304) and never runs a stale app after an upgrade.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from aiohttp import web

log = logging.getLogger(__name__)

MAX_FILE_BYTES: Final = 4 * 1024 * 1024  # the bundled app is ~100 kB; more is a mistake
INDEX: Final = "index.html"
#: The only files served, and their content types (never guessed from the file).
FILES: Final = {
    INDEX: "text/html",
    "app.js": "text/javascript",
    "app.js.map": "application/json",
    "app.css": "text/css",
    "manifest.webmanifest": "application/manifest+json",
    "icon.svg": "image/svg+xml",
    "icon-192.png": "image/png",
    "icon-512.png": "image/png",
}
TEXT_TYPES: Final = frozenset({"text/html", "text/javascript", "text/css", "application/json"})
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Cache-Control": "no-cache",
}
NOT_BUILT: Final = (
    "The web app is not built: run `npm run build` in gateway/webapp, then restart the gateway."
)


def dist_dir() -> Traversable:
    """gateway/webapp/dist/ inside the installed package."""
    return resources.files("gateway").joinpath("webapp", "dist")


class _File:
    __slots__ = ("body", "etag", "type")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def load(root: Traversable | Path) -> dict[str, _File]:
    """The allow-listed files present under ROOT (a missing or oversized one is skipped)."""
    files: dict[str, _File] = {}
    for name, ctype in FILES.items():
        entry = root.joinpath(name)
        try:
            if not entry.is_file():
                continue
            with entry.open("rb") as fh:
                body = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            log.warning("web app: cannot read %s: %s", name, exc)
            continue
        if len(body) > MAX_FILE_BYTES:
            log.warning("web app: %s is over %d bytes, not served", name, MAX_FILE_BYTES)
            continue
        files[name] = _File(body, ctype)
    return files


class WebApp:
    def __init__(self, app: web.Application, root: Traversable | Path | None = None) -> None:
        self.files = load(dist_dir() if root is None else root)
        if INDEX not in self.files:
            log.info("web app not built: /app answers 404")
        r = app.router
        r.add_get("/app", self.index)
        r.add_get("/app/", self.index)
        r.add_get("/app/{file}", self.asset)

    def _serve(self, request: web.Request, name: str) -> web.Response:
        f = self.files.get(name)
        if f is None:
            text = NOT_BUILT if name == INDEX else "not found"
            return web.Response(status=404, text=text, headers=HEADERS)
        headers = {**HEADERS, "ETag": f.etag}
        if f.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if f.type in TEXT_TYPES else None
        return web.Response(body=f.body, content_type=f.type, charset=charset, headers=headers)

    async def index(self, request: web.Request) -> web.Response:
        return self._serve(request, INDEX)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in FILES:  # the allow-list: no path, no other name reaches the disk
            return web.Response(status=404, text="not found", headers=HEADERS)
        return self._serve(request, name)


def mount(app: web.Application) -> WebApp:
    return WebApp(app)
