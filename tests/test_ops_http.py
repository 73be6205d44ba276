"""The status JSON, the status page's files and /metrics, on an in-process gateway (127.0.0.1)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.acl import Grant
from gateway.app import Gateway
from gateway.audit import AuditLog
from gateway.config import HttpConfig
from tests.helpers import Running, World, demo_config


def _audit(world: World) -> list[dict[str, object]]:
    log = AuditLog.open(world.state / "audit.sqlite3")
    try:
        return [x.as_dict() for x in log.query(limit=1000)]
    finally:
        log.close()


def _metrics(text: str) -> dict[str, float]:
    """'name{labels} value' lines -> {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.fixture
async def limited(world: World) -> AsyncIterator[Running]:
    """The user may read only the lock's `state`; an admin and a stranger exist too."""
    world.install(
        Grant.for_key(
            world.user.public, things=["front-door"], affordances=["state"], ops=["readproperty"]
        ),
        Grant.for_key(world.stranger.public, things=["*"], ops=["readproperty"], role="admin"),
    )
    gw = await Gateway.create(demo_config(world.state))
    await gw.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gw, gw.http_url, http, world)
    await gw.stop()


async def test_status_page_files_and_headers(running: Running) -> None:
    r = running
    async with r.http.get(f"{r.url}/status") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert '<script src="/status/status.js"' in page and 'id="things"' in page
    async with r.http.get(f"{r.url}/status/status.js") as resp:
        assert resp.status == 200 and resp.content_type == "application/javascript"
        js = await resp.text()
    assert "crypto.subtle.sign" in js and "innerHTML" not in js  # text only, never markup
    async with r.http.get(f"{r.url}/status/status.css") as resp:
        assert resp.status == 200
    async with r.http.get(f"{r.url}/status/..%2Fserver.py") as resp:
        assert resp.status == 404
    async with r.http.get(f"{r.url}/status/id") as resp:
        assert await resp.json() == {"id": r.gw.id}


async def test_status_json_needs_a_granted_key(running: Running) -> None:
    r = running
    async with r.http.get(f"{r.url}/status.json") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    async with r.http.get(f"{r.url}/status.json", headers=r.auth(r.world.stranger)) as resp:
        assert resp.status == 401  # a key the ACL does not name
    refusals = [a for a in _audit(r.world) if a["op"] == "readstatus"]
    assert len(refusals) == 2 and not any(a["allowed"] for a in refusals)


async def test_owner_sees_everything_and_each_token_is_audited_once(running: Running) -> None:
    r = running
    headers = r.auth(r.world.owner)
    async with r.http.get(f"{r.url}/things/front-door/properties/state", headers=r.auth()) as resp:
        assert resp.status == 200
    for _ in range(3):  # the page polls with the same token
        async with r.http.get(f"{r.url}/status.json", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            body = await resp.json()
    gw = body["gateway"]
    assert gw["id"] == r.gw.id and gw["owner"] == r.world.owner.id
    assert gw["acl_version"] == 1 and gw["audit_healthy"] is True
    assert body["viewer"] == {"id": r.world.owner.id, "role": "owner", "scope": "full"}
    things = {t["name"]: t for t in body["things"]}
    assert things["front-door"]["properties"]["state"] == {"value": "locked"}
    assert set(things["living-room"]["properties"]) >= {"temperature", "targetTemperature"}
    assert things["front-door"]["id"].startswith("urn:uuid:")
    ops = [(a["subject"], a["op"]) for a in body["audit"]]
    assert (r.world.user.id, "readproperty") in ops  # someone else's record: full view
    assert [q["label"] for q in body["qr"]][1] == "this status page"
    assert all(q["svg"].startswith("data:image/svg+xml") for q in body["qr"])
    assert body["qr"][0]["text"].startswith("SB:")
    views = [a for a in _audit(r.world) if a["op"] == "readstatus" and a["allowed"]]
    assert len(views) == 1 and views[0]["subject"] == r.world.owner.id


async def test_limited_viewer_sees_only_its_grant_and_its_own_records(limited: Running) -> None:
    r = limited
    async with r.http.get(f"{r.url}/things/living-room/properties/mode", headers=r.auth()) as resp:
        assert resp.status == 403  # denied, audited under the user's id
    async with r.http.get(
        f"{r.url}/things/front-door/properties/state", headers=r.auth(r.world.owner)
    ) as resp:
        assert resp.status == 200
    async with r.http.get(f"{r.url}/status.json", headers=r.auth()) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["viewer"]["role"] == "user" and body["viewer"]["scope"] == "limited"
    things = {t["name"]: t["properties"] for t in body["things"]}
    assert things == {"front-door": {"state": {"value": "locked"}}, "living-room": {}}
    assert body["audit"] and {a["subject"] for a in body["audit"]} == {r.world.user.id}
    async with r.http.get(f"{r.url}/status.json", headers=r.auth(r.world.stranger)) as resp:
        admin = await resp.json()
    assert admin["viewer"]["role"] == "admin" and admin["viewer"]["scope"] == "full"
    assert r.world.owner.id in {a["subject"] for a in admin["audit"]}


async def test_metrics_on_loopback_count_requests_faults_and_subscribers(running: Running) -> None:
    r = running
    async with r.http.get(f"{r.url}/metrics") as resp:  # loopback: no token needed
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        before = _metrics(await resp.text())
    async with r.http.get(f"{r.url}/things/front-door/properties/state", headers=r.auth()) as resp:
        assert resp.status == 200
    async with r.http.get(
        f"{r.url}/things/front-door/properties/state", headers=r.auth(r.world.stranger)
    ) as resp:
        assert resp.status == 401
    sub = r.gw.things["front-door"].bus.subscribe("property", "state")
    thermostat = r.gw.things["living-room"]
    thermostat.driver.fail_sensor("temperature")  # type: ignore[attr-defined]
    for _ in range(50):
        if thermostat.bus.faults:
            break
        async with r.http.get(
            f"{r.url}/things/living-room/properties/temperature", headers=r.auth()
        ) as resp:
            pass
    async with r.http.get(f"{r.url}/metrics") as resp:
        text = await resp.text()
    sub.close()
    after = _metrics(text)
    assert "# TYPE streembit_requests_total counter" in text
    assert after["streembit_requests_total"] >= before["streembit_requests_total"] + 2
    assert after["streembit_requests_failed_total"] >= before["streembit_requests_failed_total"] + 1
    subs = 'streembit_event_subscribers{thing="front-door"}'
    assert after[subs] == before[subs] + 1
    assert after['streembit_driver_faults_total{thing="living-room"}'] == 1
    assert after['streembit_thing_faulted{thing="living-room"}'] == 1
    assert after["streembit_dht_peers"] == 0 and after["streembit_audit_healthy"] == 1
    assert after["streembit_acl_version"] == 1
    assert after["streembit_audit_records_total"] > before["streembit_audit_records_total"]


@pytest.mark.parametrize("mode", ["token", "off"])
async def test_metrics_modes(world: World, mode: str) -> None:
    world.install(Grant.for_key(world.user.public, things=["*"], ops=["readproperty"]))
    cfg = demo_config(world.state)
    cfg = dataclasses.replace(cfg, http=HttpConfig(host="127.0.0.1", port=0, metrics=mode))
    gw = await Gateway.create(cfg)
    await gw.start()
    try:
        async with aiohttp.ClientSession() as http:
            r = Running(gw, gw.http_url, http, world)
            async with http.get(f"{r.url}/metrics") as resp:
                assert resp.status == (401 if mode == "token" else 404)
            async with http.get(f"{r.url}/metrics", headers=r.auth()) as resp:
                assert resp.status == (200 if mode == "token" else 404)
    finally:
        await gw.stop()
