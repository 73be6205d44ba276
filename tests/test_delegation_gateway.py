"""Delegation chains presented to a running gateway, over HTTP and P2P (docs/acl.md §6).

The owner grants Alice (`world.user`) the front door with a delegation depth; Alice signs links
offline; the cleaner (`world.stranger`, a key the ACL does not know) presents them. Every attack
of issue 15 is refused with its own code, audited, and leaves the lock locked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.acl import Grant, sign_acl, without_subject
from gateway.acl.delegation import HTTP_HEADER, root_ref, sign_link
from gateway.acl.document import without_link
from gateway.audit import AuditLog
from gateway.auth import issue_token
from gateway.bindings.p2p import P2PBinding
from gateway.identity import KeyPair, generate_keypair
from gateway.peer import PeerClient, PeerConnection, PeerRequestError
from tests.helpers import Running, World

DOOR = "front-door"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HOUR = 3600


def _grant(w: World, *, delegate: int = 2, **kw: Any) -> Grant:
    args: dict[str, Any] = {
        "things": [DOOR],
        "ops": ["invokeaction", "readproperty", "observeproperty"],
        "delegate": delegate,
    }
    args.update(kw)
    return Grant.for_key(w.user.public, **args)


def _link(w: World, issuer: KeyPair, to: KeyPair, *, parent: str | None = None, **kw: Any) -> str:
    args: dict[str, Any] = {
        "gateway_id": w.gw_key.id,
        "things": [DOOR],
        "ops": ["invokeaction", "readproperty", "observeproperty"],
        "exp": int(time.time()) + HOUR,
        "depth": 0,
    }
    args.update(kw)
    return sign_link(issuer, to=to.id, parent=parent, **args)


@pytest.fixture
async def delegated(world: World, running: Running) -> Running:
    """The running gateway with Alice's grant narrowed to the front door, delegate 2."""
    world.install(_grant(world))
    running.gw.acl.reload_if_changed()
    return running


def _headers(r: Running, kp: KeyPair, chain: list[str] | None) -> dict[str, str]:
    token = issue_token(kp, audience=r.world.gw_key.id, embed_key=chain is not None)
    headers = {"Authorization": f"Bearer {token}"}
    if chain is not None:
        headers[HTTP_HEADER] = "~".join(chain)
    return headers


async def _call(
    r: Running, kp: KeyPair, chain: list[str] | None, action: str = "unlock"
) -> tuple[int, Any]:
    url = f"{r.url}/things/{DOOR}/actions/{action}"
    async with r.http.post(url, headers=_headers(r, kp, chain)) as resp:
        body = await resp.json() if resp.status != 204 else None
        return resp.status, body


async def _state(r: Running) -> str:
    url = f"{r.url}/things/{DOOR}/properties/state"
    async with r.http.get(url, headers=r.auth(r.world.owner)) as resp:
        assert resp.status == 200
        state: str = await resp.json()
        return state


def _audit(r: Running, subject: str) -> list[dict[str, Any]]:
    log = AuditLog.open(r.world.state / "audit.sqlite3")
    try:
        return [x.as_dict() for x in log.query(limit=5000) if x.subject == subject]
    finally:
        log.close()


async def _audited(r: Running, subject: str, pred: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 3
    while True:
        rows = [x for x in _audit(r, subject) if pred(x)]
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------------ HTTP
async def test_a_cleaner_unlocks_with_alice_s_chain_until_its_uses_run_out(
    delegated: Running,
) -> None:
    r, w = delegated, delegated.world
    cleaner = w.stranger
    chain = [_link(w, w.user, cleaner, uses=2)]
    # without the chain the cleaner's key is unknown to the gateway, as before
    assert (await _call(r, cleaner, None))[0] == 401
    status, body = await _call(r, cleaner, chain)
    assert status in (200, 204), body
    assert await _state(r) == "unlocked"
    assert (await _call(r, cleaner, chain, "lock"))[0] in (200, 204)
    assert await _state(r) == "locked"
    status, body = await _call(r, cleaner, chain)  # the third use
    assert (status, body["error"]) == (403, "delegation_used_up")
    assert await _state(r) == "locked"
    # a Thing outside the link: an ACL refusal with the chain's rule
    url = f"{r.url}/things/living-room/properties/temperature"
    async with r.http.get(url, headers=_headers(r, cleaner, chain)) as resp:
        assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")
    rows = await _audited(r, cleaner.id, lambda x: x["op"] == "invokeaction")
    allowed = [x for x in rows if x["allowed"]]
    assert len(allowed) == 2 and all(x["rule"].startswith("dlg:") for x in allowed)
    assert allowed[0]["rule"].endswith(">" + cleaner.id[:8])
    assert any(x["reason"].startswith("delegation_used_up") for x in rows if not x["allowed"])


def _attacks(w: World) -> dict[str, tuple[KeyPair, list[str]]]:
    """code -> (the requester, the chain it presents)."""
    alice, cleaner, helper, mallory = w.user, w.stranger, generate_keypair(), generate_keypair()
    now = int(time.time())
    deep = _link(w, alice, cleaner, depth=1)
    shallow = _link(w, alice, cleaner, depth=0)
    forged = _link(w, mallory, helper, parent=deep)  # signed by mallory, not by the cleaner
    return {
        "delegation_widens": (cleaner, [_link(w, alice, cleaner, things=["*"])]),
        "delegation_bad_signature": (helper, [deep, forged]),
        "delegation_loop": (alice, [deep, _link(w, cleaner, alice, parent=deep)]),
        "delegation_too_deep": (helper, [shallow, _link(w, cleaner, helper, parent=shallow)]),
        "delegation_wrong_holder": (mallory, [deep]),  # a stolen chain
        "delegation_expired": (
            helper,
            [deep, _link(w, cleaner, helper, parent=deep, now=now - 2 * HOUR, exp=now - HOUR)],
        ),
        "delegation_malformed": (cleaner, ["not.a.link"]),
        "delegation_revoked": (cleaner, [_link(w, mallory, cleaner)]),  # mallory has no grant
    }


async def test_every_attack_is_refused_with_its_own_code_audited_and_actuates_nothing(
    delegated: Running,
) -> None:
    r, w = delegated, delegated.world
    for code, (holder, chain) in _attacks(w).items():
        status, body = await _call(r, holder, chain)
        assert body is not None and body["error"] == code, (code, status, body)
        assert status == (400 if code == "delegation_malformed" else 403)
        rows = await _audited(r, holder.id, lambda x, c=code: x["reason"].startswith(c))
        assert rows and not rows[0]["allowed"], code
    assert await _state(r) == "locked"


async def test_depth_zero_and_a_revoked_middle_link(delegated: Running) -> None:
    r, w = delegated, delegated.world
    alice, cleaner, helper = w.user, w.stranger, generate_keypair()
    middle = _link(w, alice, cleaner, depth=1)
    chain = [middle, _link(w, cleaner, helper, parent=middle)]
    assert (await _call(r, helper, chain))[0] in (200, 204)
    assert (await _call(r, helper, chain, "lock"))[0] in (200, 204)
    store = r.gw.acl
    current = store.current
    assert current is not None
    store.install(sign_acl(without_link(current, _jti(middle)), w.owner))
    status, body = await _call(r, helper, chain)
    assert (status, body["error"]) == (403, "delegation_revoked")
    w.install(_grant(w, delegate=0))
    r.gw.acl.reload_if_changed()
    status, body = await _call(r, cleaner, [_link(w, alice, cleaner)])
    assert (status, body["error"]) == (403, "delegation_not_allowed")
    assert await _state(r) == "locked"


def _jti(link: str) -> str:
    from gateway.acl.delegation import parse_link

    return parse_link(link).jti


async def test_a_malformed_header_and_a_jwk_token_without_a_chain(delegated: Running) -> None:
    r, w = delegated, delegated.world
    url = f"{r.url}/things/{DOOR}/actions/unlock"
    headers = _headers(r, w.stranger, ["x"])
    headers[HTTP_HEADER] = "a" * 8000  # aiohttp caps a header line at 8190 bytes
    async with r.http.post(url, headers=headers) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "delegation_malformed")
    token = issue_token(w.stranger, audience=w.gw_key.id, embed_key=True)
    chained = {"Authorization": f"Bearer {token}", HTTP_HEADER: _link(w, w.user, w.stranger)}
    for headers in (
        {"Authorization": f"Bearer {token}"},
        chained,
        {"Authorization": f"Bearer {token}"},
    ):
        async with r.http.post(url, headers=headers) as resp:  # the cache keeps them apart
            if HTTP_HEADER in headers:
                assert resp.status == 200
                continue
            body = await resp.json()
            assert (resp.status, body["error"]) == (401, "unauthenticated")
            assert "unknown_issuer" in body["reason"]
    async with r.http.post(f"{r.url}/things/{DOOR}/actions/lock", headers=chained) as resp:
        assert resp.status == 200
    # a jwk that is not the issuer's key is refused even with a chain
    other = issue_token(generate_keypair(), audience=w.gw_key.id, embed_key=True)
    forged = ".".join([other.split(".")[0], *token.split(".")[1:]])
    headers = {"Authorization": f"Bearer {forged}", HTTP_HEADER: _link(w, w.user, w.stranger)}
    async with r.http.post(url, headers=headers) as resp:
        assert resp.status == 401
    assert await _state(r) == "locked"


# ------------------------------------------------------------------------------------- P2P
@pytest.fixture
async def p2p(delegated: Running) -> AsyncIterator[tuple[Running, P2PBinding]]:
    gw = delegated.gw
    binding = P2PBinding(gw.identity, gw.processor, gw.acl, gw.tds)
    await binding.start()
    try:
        yield delegated, binding
    finally:
        await binding.stop()


async def _peer(binding: P2PBinding, r: Running, key: KeyPair, made: list[PeerClient]) -> Any:
    client = PeerClient(key)
    made.append(client)
    conn: PeerConnection = await client.connect(binding.url, r.gw.identity.public)
    return conn


async def test_over_p2p_a_chain_unlocks_lists_and_a_revocation_ends_its_live_stream(
    p2p: tuple[Running, P2PBinding],
) -> None:
    r, binding = p2p
    w = r.world
    made: list[PeerClient] = []
    try:
        cleaner = await _peer(binding, r, w.stranger, made)
        owner = await _peer(binding, r, w.owner, made)
        with pytest.raises(PeerRequestError) as err:
            await cleaner.invoke(DOOR, "unlock")  # no chain: no grant
        assert err.value.code == "forbidden"
        cleaner.delegation = (_link(w, w.user, w.stranger),)
        assert [t["name"] for t in await cleaner.things()] == [DOOR]
        assert (await cleaner.td(DOOR))["title"]
        stream = await cleaner.observe(DOOR, "state").start()
        await cleaner.invoke(DOOR, "unlock")
        assert await asyncio.wait_for(anext(stream), 3) == "unlocked"
        await cleaner.invoke(DOOR, "lock")
        assert await asyncio.wait_for(anext(stream), 3) == "locked"
        with pytest.raises(PeerRequestError) as err:
            await cleaner.read("living-room", "temperature")
        assert err.value.code == "forbidden"
        current = r.gw.acl.current
        assert current is not None
        t0 = time.monotonic()
        await owner.acl_push(sign_acl(without_subject(current, w.user.id), w.owner))
        with pytest.raises(PeerRequestError) as err:  # revoking Alice ends the cleaner's stream
            await asyncio.wait_for(anext(stream), 3)
        assert err.value.code == "forbidden" and time.monotonic() - t0 < 0.5
        with pytest.raises(PeerRequestError) as err:
            await cleaner.invoke(DOOR, "unlock")
        assert err.value.code == "delegation_revoked"
    finally:
        for client in made:
            await client.close()
    closed = await _audited(r, w.stranger.id, lambda x: x["detail"] == "stream closed")
    assert closed and closed[0]["reason"].startswith("delegation_revoked")
    assert await _state(r) == "locked"


async def test_a_malformed_dlg_claim_is_refused_before_anything_is_decided(
    p2p: tuple[Running, P2PBinding],
) -> None:
    r, binding = p2p
    made: list[PeerClient] = []
    try:
        cleaner = await _peer(binding, r, r.world.stranger, made)
        cleaner.delegation = tuple(["x"] * 5)  # more links than a chain may have
        with pytest.raises(PeerRequestError) as err:
            await cleaner.invoke(DOOR, "unlock")
        assert err.value.code == "bad_format"
        cleaner.delegation = ("not.a.link",)
        with pytest.raises(PeerRequestError) as err:
            await cleaner.invoke(DOOR, "unlock")
        assert err.value.code == "delegation_malformed"
    finally:
        for client in made:
            await client.close()
    assert await _state(r) == "locked"


# ------------------------------------------------------------------ review findings (issue 15)
async def test_the_same_link_in_its_other_signature_form_counts_against_the_same_uses(
    delegated: Running,
) -> None:
    """ECDSA signatures have two valid forms (s and n - s): the use count follows the link's
    issuer and jti, not its text."""
    r, w = delegated, delegated.world
    link = _link(w, w.user, w.stranger, uses=1)
    head, payload, sig = link.split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    r_, s_ = raw[:32], int.from_bytes(raw[32:], "big")
    other = r_ + (P256_ORDER - s_).to_bytes(32, "big")
    twin = ".".join([head, payload, base64.urlsafe_b64encode(other).rstrip(b"=").decode()])
    assert twin != link
    assert (await _call(r, w.stranger, [link]))[0] in (200, 204)
    status, body = await _call(r, w.stranger, [twin], "lock")
    assert (status, body["error"]) == (403, "delegation_used_up")


async def test_a_delegation_header_opens_no_other_route_to_an_unknown_key(
    delegated: Running,
) -> None:
    r, w = delegated, delegated.world
    headers = _headers(r, generate_keypair(), [_link(w, w.user, w.stranger)])
    for path in ("/status.json", "/acl/mine", "/audit", "/audit/checkpoint"):
        async with r.http.get(f"{r.url}{path}", headers=headers) as resp:
            assert resp.status == 401, path


async def test_a_refusal_tells_a_stranger_nothing_about_the_acl(delegated: Running) -> None:
    """A link naming a grantee but not signed by her is bad_signature, whatever her grant."""
    r, w = delegated, delegated.world
    mallory = generate_keypair()
    for named in (w.user, w.owner, generate_keypair()):
        forged = _forge(w, named, mallory, w.stranger)
        status, body = await _call(r, w.stranger, [forged])
        assert (status, body["error"]) == (403, "delegation_bad_signature"), named


async def test_a_regrant_after_revocation_does_not_revive_old_links(delegated: Running) -> None:
    r, w = delegated, delegated.world
    old = _link(w, w.user, w.stranger)
    assert (await _call(r, w.stranger, [old], "lock"))[0] in (200, 204)
    current = r.gw.acl.current
    assert current is not None
    r.gw.acl.install(sign_acl(without_subject(current, w.user.id), w.owner))
    await asyncio.sleep(1.1)  # the re-grant's `since` is a later second than the old link's iat
    w.install(_grant(w))
    r.gw.acl.reload_if_changed()
    status, body = await _call(r, w.stranger, [old], "lock")
    assert (status, body["error"]) == (403, "delegation_revoked")
    assert "predates" in body["reason"]
    fresh = _link(w, w.user, w.stranger)
    assert (await _call(r, w.stranger, [fresh], "lock"))[0] in (200, 204)


async def test_a_chain_is_refused_outside_its_root_grant_s_validity(delegated: Running) -> None:
    r, w = delegated, delegated.world
    now = int(time.time())
    w.install(_grant(w, nbf=now + 30))  # the link may start 60 s early (clock skew): not the grant
    r.gw.acl.reload_if_changed()
    status, body = await _call(r, w.stranger, [_link(w, w.user, w.stranger, now=now)])
    assert (status, body["error"]) == (403, "delegation_expired")


def _forge(w: World, named: KeyPair, signer: KeyPair, to: KeyPair) -> str:
    """A first link claiming NAMED as its issuer (header jwk and iss) but signed by SIGNER."""
    genuine = _link(w, signer, to)
    head, payload, sig = genuine.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    header["jwk"] = dict(named.public.jwk)
    claims["iss"] = named.id
    claims["prev"] = root_ref(w.gw_key.id, named.id)

    def seg(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join([seg(header), seg(claims), sig])
