"""The HTTP binding end to end on 127.0.0.1: TDs, reads, writes, actions, streams, refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import aiohttp

from gateway.acl import Grant
from gateway.audit import AuditLog
from gateway.wot import validate_td
from tests.helpers import Running


def _b64(d: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def _claims(r: Running, **over: object) -> dict[str, object]:
    now = int(time.time())
    c: dict[str, object] = {
        "iss": r.world.user.id,
        "sub": r.world.user.id,
        "aud": r.gw.id,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": f"j{time.monotonic_ns()}",
    }
    c.update(over)
    return c


def _audit(r: Running) -> list[dict[str, object]]:
    log = AuditLog.open(r.world.state / "audit.sqlite3")
    try:
        return [x.as_dict() for x in log.query(limit=1000)]
    finally:
        log.close()


async def test_directory_and_tds_validate(running: Running) -> None:
    r = running
    async with r.http.get(f"{r.url}/things") as resp:
        assert resp.status == 200
        tds = await resp.json()
    assert {td["title"] for td in tds} == {"Front door", "Living room"}
    for td in tds:
        validate_td(td, require_op=True)
        assert td["security"] == ["bearer_sc"]
        async with r.http.get(f"{r.url}/things/{td['id']}") as resp:
            assert (await resp.json())["id"] == td["id"]
    async with r.http.get(f"{r.url}/things/front-door") as resp:
        assert set((await resp.json())["actions"]) == {"lock", "unlock"}
    async with r.http.get(f"{r.url}/.well-known/wot") as resp:
        validate_td(await resp.json())
    async with r.http.get(f"{r.url}/things/nope") as resp:
        assert resp.status == 404


async def test_read_write_invoke(running: Running) -> None:
    r = running
    base = f"{r.url}/things"
    async with r.http.get(f"{base}/living-room/properties/temperature", headers=r.auth()) as resp:
        assert resp.status == 200
        assert isinstance(await resp.json(), float)
    async with r.http.put(
        f"{base}/living-room/properties/targetTemperature", json=21.5, headers=r.auth()
    ) as resp:
        assert resp.status == 204
    async with r.http.get(
        f"{base}/living-room/properties/targetTemperature", headers=r.auth()
    ) as resp:
        assert await resp.json() == 21.5
    async with r.http.post(f"{base}/front-door/actions/unlock", headers=r.auth()) as resp:
        assert resp.status == 200
    async with r.http.get(f"{base}/front-door/properties/state", headers=r.auth()) as resp:
        assert await resp.json() == "unlocked"
    async with r.http.post(f"{base}/front-door/actions/lock", headers=r.auth()) as resp:
        assert resp.status == 200
    async with r.http.get(f"{base}/front-door/properties/state", headers=r.auth()) as resp:
        assert await resp.json() == "locked"
    rows = _audit(r)
    mine = [x for x in rows if x["subject"] == r.world.user.id and x["op"] == "invokeaction"]
    assert {x["affordance"] for x in mine} == {"lock", "unlock"} and all(x["allowed"] for x in mine)


async def test_chunked_body(running: Running) -> None:
    r = running

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"2"
        yield b"3.5"

    url = f"{r.url}/things/living-room/properties/targetTemperature"
    async with r.http.put(url, data=chunks(), headers=r.auth()) as resp:
        assert resp.status == 204
    async with r.http.get(url, headers=r.auth()) as resp:
        assert await resp.json() == 23.5


async def test_bad_input_is_refused_audited_and_changes_nothing(running: Running) -> None:
    r = running
    url = f"{r.url}/things/living-room/properties/targetTemperature"
    cases = [
        (b"90", 400, "out_of_range"),
        (b'"warm"', 400, "invalid_input"),
        (b"{not json", 400, "bad_request"),
        (b"1" * (r.gw.config.http.max_body + 10), 413, "too_large"),
    ]
    for body, status, code in cases:
        async with r.http.put(url, data=body, headers=r.auth()) as resp:
            assert resp.status == status, body[:20]
            assert (await resp.json())["error"] == code
    async with r.http.get(url, headers=r.auth()) as resp:
        assert await resp.json() == 20.0
    for path, status in (
        ("/things/nope/properties/x", 404),
        ("/things/living-room/properties/colour", 404),
    ):
        async with r.http.get(r.url + path, headers=r.auth()) as resp:
            assert resp.status == status
    async with r.http.put(
        f"{r.url}/things/living-room/properties/heating", json=True, headers=r.auth()
    ) as resp:
        assert resp.status == 405
    reasons = " ".join(str(x["reason"]) for x in _audit(r))
    for code in (
        "out_of_range",
        "invalid_input",
        "bad_request",
        "too_large",
        "unknown_thing",
        "unknown_affordance",
        "read_only",
    ):
        assert code in reasons


async def test_bad_tokens_get_401_and_are_audited(running: Running) -> None:
    r = running
    url = f"{r.url}/things/front-door/actions/unlock"
    pub_pem = r.world.user.public.pem()
    # the classic attack, crafted by hand (joserfc itself refuses to build it)
    hs_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': r.world.user.id})}.{_b64(_claims(r))}"
    mac = hmac.new(pub_pem, hs_input.encode(), hashlib.sha256).digest()
    hs = f"{hs_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(r))}."
    now = int(time.time())
    tokens = {
        "no token": None,
        "alg none": none,
        "HS256 with public key": hs,
        "expired": r.world.token(r.world.user, ttl=60, now=now - 3600),
        "not yet valid": r.world.token(r.world.user, ttl=60, now=now + 3600),
        "garbage": "a.b.c",
    }
    from gateway.auth import issue_token

    tokens["other audience"] = issue_token(r.world.user, audience="someone-else")
    for label, tok in tokens.items():
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        async with r.http.post(url, headers=headers) as resp:
            assert resp.status == 401, label
            body = await resp.json()
            assert body["error"] == "unauthenticated" and body["reason"], label
    async with r.http.get(f"{r.url}/things/front-door/properties/state", headers=r.auth()) as resp:
        assert await resp.json() == "locked", "nothing was actuated"
    denied = [x for x in _audit(r) if not x["allowed"] and x["op"] == "invokeaction"]
    assert len(denied) >= len(tokens)


async def test_acl_refusals_are_403_with_reason(running: Running) -> None:
    r = running
    w = r.world
    async with r.http.post(
        f"{r.url}/things/front-door/actions/unlock", headers=r.auth(w.stranger)
    ) as resp:
        assert resp.status == 401  # unknown key: not in the ACL at all
    w.install(Grant.for_key(w.stranger.public, things=["living-room"], ops=["readproperty"]))
    # installed behind the running gateway's back (as `acl apply` does): picked up within ~1 s
    for _ in range(50):
        if r.gw.acl.current is not None and r.gw.acl.current.grant_for(w.stranger.id):
            break
        await asyncio.sleep(0.1)
    async with r.http.get(
        f"{r.url}/things/living-room/properties/temperature", headers=r.auth(w.stranger)
    ) as resp:
        assert resp.status == 200
    async with r.http.put(
        f"{r.url}/things/living-room/properties/targetTemperature",
        json=22,
        headers=r.auth(w.stranger),
    ) as resp:
        assert resp.status == 403
        assert (await resp.json())["reason"] == "operation not granted"
    async with r.http.post(
        f"{r.url}/things/front-door/actions/unlock", headers=r.auth(w.stranger)
    ) as resp:
        assert resp.status == 403
        assert (await resp.json())["reason"] == "thing not granted"


async def test_acl_push_endpoint_owner_only_and_revocation_is_immediate(running: Running) -> None:
    r = running
    w = r.world
    from gateway.acl import sign_acl, without_subject

    revoked = sign_acl(without_subject(r.gw.acl.current, w.user.id), w.owner)  # type: ignore[arg-type]
    async with r.http.put(f"{r.url}/acl", data=revoked, headers=r.auth(w.user)) as resp:
        assert resp.status == 403
    headers = r.auth(w.user)
    async with r.http.get(f"{r.url}/things/front-door/properties/state", headers=headers) as resp:
        assert resp.status == 200
    async with r.http.put(f"{r.url}/acl", data=revoked, headers=r.auth(w.owner)) as resp:
        assert resp.status == 200, await resp.text()
    async with r.http.get(f"{r.url}/things/front-door/properties/state", headers=headers) as resp:
        assert resp.status in (401, 403), "the cached token of a revoked key dies at once"
    async with r.http.put(f"{r.url}/acl", data=revoked, headers=r.auth(w.owner)) as resp:
        assert resp.status == 400 and "rollback" in (await resp.json())["reason"]


async def test_longpoll_observe_and_head(running: Running) -> None:
    r = running
    url = f"{r.url}/things/front-door/properties/state/observe"
    async with r.http.head(url) as resp:
        assert resp.status == 200
    poll = asyncio.create_task(r.http.get(url, headers=r.auth()))
    await asyncio.sleep(0.2)
    async with r.http.post(f"{r.url}/things/front-door/actions/unlock", headers=r.auth()):
        pass
    resp = await asyncio.wait_for(poll, 5)
    assert resp.status == 200 and await resp.json() == "unlocked"
    resp.release()


async def test_sse_event_stream_and_revocation_closes_it(running: Running) -> None:
    r = running
    w = r.world
    url = f"{r.url}/things/front-door/events/unlocked/sse"
    got: list[dict[str, object]] = []
    async with r.http.get(url, headers=r.auth(), timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert resp.status == 200
        async with r.http.post(
            f"{r.url}/things/front-door/actions/unlock", headers=r.auth(w.owner)
        ):
            pass
        event = None
        async for line in resp.content:
            text = line.decode().strip()
            if text.startswith("event:"):
                event = text.split(":", 1)[1].strip()
            if text.startswith("data:") and event == "unlocked":
                got.append(json.loads(text[5:]))
                break
        assert got and got[0]["actor"] == w.owner.id
        from gateway.acl import sign_acl, without_subject

        revoked = sign_acl(without_subject(r.gw.acl.current, w.user.id), w.owner)  # type: ignore[arg-type]
        async with r.http.put(f"{r.url}/acl", data=revoked, headers=r.auth(w.owner)) as put:
            assert put.status == 200
        rest = await asyncio.wait_for(resp.content.read(), 5)
        assert b"access revoked" in rest


async def test_provision_and_acl_apply_beside_a_running_gateway(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The README flow: demo running unprovisioned, then provision + acl apply from the CLI."""
    from gateway.acl import AclStore, new_acl, sign_acl, with_grant
    from gateway.app import Gateway
    from gateway.identity import generate_keypair
    from gateway.state import StateDir
    from tests.helpers import demo_config

    state = tmp_path / "st"
    gw_key, _ = StateDir(state).init_identity()
    gw = await Gateway.create(demo_config(state))
    await gw.start()
    try:
        owner, alice = generate_keypair(), generate_keypair()
        other = AclStore(state, gw_key.id)  # what the CLI commands do, in another process
        other.pin_owner(owner.public)
        acl = with_grant(
            new_acl(gw_key.id), Grant.for_key(alice.public, things=["*"], ops=["readproperty"])
        )
        other.install(sign_acl(acl, owner))
        for _ in range(50):
            if gw.acl.current is not None:
                break
            await asyncio.sleep(0.1)
        assert gw.acl.owner is not None and gw.acl.owner.id == owner.id
        from gateway.auth import issue_token

        tok = issue_token(alice, audience=gw_key.id)
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{gw.http_url}/things/front-door/properties/state",
                headers={"Authorization": f"Bearer {tok}"},
            ) as resp,
        ):
            assert resp.status == 200 and await resp.json() == "locked"
    finally:
        await gw.stop()


async def test_hostile_json_bodies_get_400_audited_and_actuate_nothing(running: Running) -> None:
    r = running
    prop = f"{r.url}/things/living-room/properties/targetTemperature"
    action = f"{r.url}/things/front-door/actions/unlock"
    bodies = {
        b"[" * 3000 + b"]" * 3000: "too_deep",
        b"9" * 5000: "long_number",
        b'{"v":' + b"1" * 400 + b".5}": "long_number",
        b"1e400": "non_finite",
        b"NaN": "non_finite",
        b'{"a":1,"a":2}': "duplicate_key",
        b'"\\ud800"': "bad_string",
    }
    for url, method in ((prop, r.http.put), (action, r.http.post)):
        for body, problem in bodies.items():
            async with method(url, data=body, headers=r.auth()) as resp:
                assert resp.status == 400, (url, body[:20])
                reply = await resp.json()
                assert reply["error"] == "bad_request" and problem in reply["reason"]
    async with r.http.get(prop, headers=r.auth()) as resp:
        assert await resp.json() == 20.0
    async with r.http.get(f"{r.url}/things/front-door/properties/state", headers=r.auth()) as resp:
        assert await resp.json() == "locked"
    deep_token = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode() + ".e30.x"
    async with r.http.put(prop, json=21, headers={"Authorization": f"Bearer {deep_token}"}) as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "unauthenticated"
    refused = [x for x in _audit(r) if not x["allowed"] and x["subject"] == r.world.user.id]
    assert any("bad_format" in str(x["reason"]) for x in _audit(r) if x["subject"] == "-")
    for problem in set(bodies.values()):
        expected = 2 * list(bodies.values()).count(problem)  # each body on both routes
        assert sum(problem in str(x["reason"]) for x in refused) == expected, problem


async def test_acl_push_with_a_malformed_grant_is_refused_with_a_code(running: Running) -> None:
    from joserfc import jws

    r = running
    w = r.world
    acl = r.gw.acl.current
    assert acl is not None
    bad = acl.to_json()
    bad["version"] = acl.version + 1
    bad["grants"][0]["role"] = []
    deep = acl.to_json()
    deep["version"] = acl.version + 1
    header = {"alg": "ES256", "typ": "streembit-acl+jws", "kid": w.owner.id}
    texts = {
        jws.serialize_compact(header, json.dumps(bad).encode(), w.owner.jose_key()): "role",
        jws.serialize_compact(
            header,
            json.dumps(deep).encode()[:-1] + b',"tz":' + b"[" * 5000 + b"]" * 5000 + b"}",
            w.owner.jose_key(),
            algorithms=["ES256"],
        ): "too_deep",
    }
    for text, why in texts.items():
        async with r.http.put(f"{r.url}/acl", data=text, headers=r.auth(w.owner)) as resp:
            assert resp.status == 400
            reason = (await resp.json())["reason"]
            assert reason.startswith("acl_malformed") and why in reason
    assert r.gw.acl.current is not None and r.gw.acl.current.version == acl.version
    owner_rows = [x for x in _audit(r) if x["subject"] == w.owner.id and x["op"] == "aclpush"]
    assert len(owner_rows) == 2 and not any(x["allowed"] for x in owner_rows)
