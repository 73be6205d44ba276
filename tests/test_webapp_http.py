"""The phone web app's gateway side on 127.0.0.1: /app and its files (allow-list, types, CSP,
no traversal), and the owner-only reads it uses: GET /audit (filters) and GET /acl."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.acl import AclStore, Grant, sign_acl, verify_acl, with_grant
from gateway.app import Gateway
from gateway.bindings.http import webapp
from tests.helpers import REPO, Running, World, demo_config

INDEX = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>'
    '<link rel="stylesheet" href="/app/app.css"></head><body>'
    '<script type="module" src="/app/app.js"></script></body></html>'
)
FILES = {"index.html": INDEX, "app.js": "console.log(1);\n", "app.css": "body{margin:0}\n"}
DIST = REPO / "gateway" / "webapp" / "dist"


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A built app of three small files, and a file outside the allow-list beside them."""
    root = tmp_path / "dist"
    root.mkdir()
    for name, text in FILES.items():
        (root / name).write_text(text)
    (root / "secret.txt").write_text("not served")
    monkeypatch.setattr(webapp, "dist_dir", lambda: root)
    return root


@pytest.fixture
async def gw(fake_dist: Path, running: Running) -> AsyncIterator[Running]:
    yield running  # fake_dist first: the gateway reads the app at start


def _strict(headers: Any) -> None:
    csp = headers["Content-Security-Policy"]
    assert csp == webapp.CSP
    for part in ("default-src 'none'", "script-src 'self'", "style-src 'self'"):
        assert part in csp
    assert "unsafe-inline" not in csp and "http" not in csp  # no inline, no other origin
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-cache"


# ---------------------------------------------------------------------------------- /app
async def test_index_at_app_and_app_slash(gw: Running) -> None:
    for path in ("/app", "/app/", "/app/index.html"):
        async with gw.http.get(gw.url + path) as resp:
            assert resp.status == 200, path
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
            _strict(resp.headers)
            assert await resp.text() == INDEX


async def test_assets_with_fixed_types_and_etag(gw: Running) -> None:
    types = {"app.js": "text/javascript", "app.css": "text/css"}
    for name, ctype in types.items():
        async with gw.http.get(f"{gw.url}/app/{name}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == f"{ctype}; charset=utf-8"
            _strict(resp.headers)
            assert await resp.text() == FILES[name]
            etag = resp.headers["ETag"]
        async with gw.http.get(f"{gw.url}/app/{name}", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
            assert await resp.read() == b""


async def test_unknown_files_404(gw: Running) -> None:
    for name in ("secret.txt", "app.mjs", "nope.js", "icon.svg", "APP.JS", "app.js%00"):
        async with gw.http.get(f"{gw.url}/app/{name}") as resp:
            assert resp.status == 404, name
            assert "not served" not in await resp.text()
    async with gw.http.get(f"{gw.url}/app/sub/app.js") as resp:
        assert resp.status == 404


async def test_traversal_refused(gw: Running) -> None:
    server_py = (REPO / "gateway" / "bindings" / "http" / "server.py").read_text()
    for raw in (
        "/app/..%2Fsecret.txt",
        "/app/%2e%2e%2fsecret.txt",
        "/app/..%2F..%2Fbindings%2Fhttp%2Fserver.py",
        "/app/../bindings/http/server.py",
        "/app/..\\secret.txt",
        "/app/%2Fetc%2Fpasswd",
    ):
        async with gw.http.get(URL(gw.url + raw, encoded=True)) as resp:
            assert resp.status == 404, raw
            body = await resp.text()
            assert "not served" not in body and server_py[:200] not in body


async def test_not_built_says_so(tmp_path: Path) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    app = web.Application()
    webapp.WebApp(app, root=tmp_path / "missing")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/app")
        assert resp.status == 404
        assert "npm run build" in await resp.text()
        _strict(resp.headers)


def test_built_app_has_no_inline_script_or_style() -> None:
    # the bundle is committed (gateway/webapp/dist): a missing one is a failure, never a skip
    assert (DIST / "index.html").is_file(), "run: cd gateway/webapp && npm ci && npm run build"
    html = (DIST / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", html, re.I)
    assert scripts and all("src=" in s for s in scripts)
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, re.I)
    assert not re.search(r"(src|href)=\"(https?:)?//", html, re.I)  # no third-party origin
    for name in ("app.js", "app.css"):
        assert (DIST / name).is_file()


# -------------------------------------------------------------------------------- /audit
async def _get(r: Running, path: str, who: Any = None, **params: str) -> tuple[int, Any]:
    headers = r.auth(who) if who is not None else {}
    async with r.http.get(r.url + path, params=params, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body


async def test_audit_owner_only(running: Running) -> None:
    r, w = running, running.world
    status, body = await _get(r, "/audit")
    assert status == 401 and body["error"] == "unauthenticated"
    status, body = await _get(r, "/audit", w.user)
    assert status == 403 and body["error"] == "forbidden"
    status, body = await _get(r, "/audit", w.stranger)
    assert status == 401  # a key the ACL does not know is not even authenticated
    status, body = await _get(r, "/audit", w.owner, subject=w.user.id)
    assert status == 200
    refused = [x for x in body["records"] if x["op"] == "readaudit"]
    assert refused and not refused[0]["allowed"] and refused[0]["rule"] == "owner-only"
    assert refused[0]["reason"].startswith("forbidden")
    status, body = await _get(r, "/audit", w.owner, subject="-", limit="5")
    assert any(
        x["op"] == "readaudit" and x["reason"].startswith("unauthenticated")
        for x in body["records"]
    )


async def test_audit_filters(running: Running) -> None:
    r, w = running, running.world
    for thing, prop in (("living-room", "temperature"), ("front-door", "state")):
        async with r.http.get(f"{r.url}/things/{thing}/properties/{prop}", headers=r.auth()):
            pass
    async with r.http.get(f"{r.url}/things/front-door/properties/state"):
        pass  # refused: no token
    await _get(r, "/audit", w.owner)  # the owner's own view is audited too
    status, body = await _get(r, "/audit", w.owner, subject=w.user.id, thing="living-room")
    assert status == 200 and body["limit"] == 100 and body["scanned"] >= 2
    recs = body["records"]
    assert recs and all(x["subject"] == w.user.id and x["thing"] == "living-room" for x in recs)
    status, body = await _get(r, "/audit", w.owner, thing="front-door", limit="1")
    assert len(body["records"]) == 1 and body["records"][0]["thing"] == "front-door"
    status, body = await _get(r, "/audit", w.owner, subject=w.owner.id)
    assert body["records"][0]["op"] == "readaudit" and body["records"][0]["allowed"]
    status, body = await _get(r, "/audit", w.owner, allowed="false")
    assert body["records"] and not any(x["allowed"] for x in body["records"])
    status, body = await _get(r, "/audit", w.owner, limit="3")
    assert status == 200 and body["scanned"] is None and len(body["records"]) == 3
    ts = [x["ts"] for x in body["records"]]
    assert ts == sorted(ts, reverse=True)  # newest first


async def test_audit_bad_queries_refused(running: Running) -> None:
    r, w = running, running.world
    bad: list[dict[str, str]] = [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "-1"},
        {"limit": "1e3"},
        {"limit": "99999999999"},
        {"subject": "not a key!"},
        {"subject": "x" * 129},
        {"thing": "../etc"},
        {"allowed": "maybe"},
        {"order": "asc"},
    ]
    for params in bad:
        status, body = await _get(r, "/audit", w.owner, **params)
        assert status == 400 and body["error"] == "bad_request", params
    async with r.http.get(f"{r.url}/audit?limit=1&limit=2", headers=r.auth(w.owner)) as resp:
        assert resp.status == 400
    status, body = await _get(r, "/audit", w.owner, subject=w.owner.id, allowed="false")
    assert (
        len([x for x in body["records"] if x["reason"].startswith("bad_request")]) == len(bad) + 1
    )


# ---------------------------------------------------------------------------------- /acl
async def test_acl_read_owner_only(running: Running) -> None:
    r, w = running, running.world
    status, body = await _get(r, "/acl")
    assert status == 401
    status, body = await _get(r, "/acl", w.user)
    assert status == 403 and body["error"] == "forbidden"
    status, body = await _get(r, "/acl", w.owner)
    assert status == 200
    assert body["version"] == body["acl"]["version"] >= 1
    assert [g["sub"] for g in body["acl"]["grants"]] == [w.user.id]
    acl = verify_acl(body["jws"], owner=w.owner.public, gateway_id=r.gw.id, installed_version=None)
    assert acl.to_json() == body["acl"]
    status, body = await _get(r, "/audit", w.owner, subject=w.user.id)
    assert any(x["op"] == "readacl" and not x["allowed"] for x in body["records"])


# ----------------------------------------------------------------------------- /acl/mine
async def test_own_rights(running: Running) -> None:
    r, w = running, running.world
    status, body = await _get(r, "/acl/mine")
    assert status == 401
    status, body = await _get(r, "/acl/mine", w.owner)
    assert status == 200 and body["role"] == "owner" and body["grant"] is None
    assert set(body["things"]) == {"front-door", "living-room"}
    status, body = await _get(r, "/acl/mine", w.user)
    assert body["role"] == "user" and "jwk" not in body["grant"]
    door = body["things"]["front-door"]
    assert door["type"] == "lock" and door["title"] == "Front door"
    assert door["actions"]["unlock"] == ["invokeaction"]
    assert "readproperty" in door["properties"]["state"]
    # narrow the user's grant to reading the living room: only that is left
    acl = AclStore(w.state, r.gw.id).current
    assert acl is not None
    narrow = Grant.for_key(w.user.public, things=["living-room"], ops=["readproperty"])
    text = sign_acl(with_grant(acl, narrow), w.owner)
    async with r.http.put(f"{r.url}/acl", data=text, headers=r.auth(w.owner)) as resp:
        assert resp.status == 200
    status, body = await _get(r, "/acl/mine", w.user)
    assert list(body["things"]) == ["living-room"]
    room = body["things"]["living-room"]
    assert room["actions"] == {} and room["events"] == {}
    assert all(ops == ["readproperty"] for ops in room["properties"].values())
    assert body["grant"]["things"] == ["living-room"]
    status, body = await _get(r, "/audit", w.owner, subject=w.user.id)
    assert any(x["op"] == "readrights" and x["rule"] == "self" for x in body["records"])


async def test_acl_read_when_none_installed(world: World) -> None:
    gw = await Gateway.create(demo_config(world.state))
    await gw.start()
    try:
        token = world.token(world.owner)
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{gw.http_url}/acl", headers=headers) as resp:
                assert resp.status == 200
                assert await resp.json() == {"version": None, "acl": None, "jws": None}
            async with http.get(f"{gw.http_url}/acl/mine", headers=headers) as resp:
                assert (await resp.json())["role"] == "owner"
    finally:
        await gw.stop()
