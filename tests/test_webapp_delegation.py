"""The web app's side of offline delegation (issue 15; docs/acl.md §6, docs/webapp.md
"Passing access on"): gateway/webapp/src/lib/delegation.js against gateway/acl/delegation.py
and dlg_verify.py, and the whole flow in real browsers.

(a) cross vectors: a link signed in JS passes `parse_link` and `verify_chain` (first link and
    an extension), a Python chain is read by JS, digests and root references agree on the
    vector of docs/acl.md §6.6;
(b) JS refuses, in words and before signing, a link wider than what its issuer holds;
(c) a JS holder presents a chain to a running gateway over HTTP (header + jwk token) and in a
    sealed P2P request (`dlg` claim);
(d) browsers: the owner grants Alice "May pass it on", Alice's app signs a link for the
    cleaner's key, the cleaner's app imports it and unlocks; screenshot.

The Node side runs through gateway/webapp/test/delegation.mjs (one process, JSON lines).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.acl import Acl, Grant
from gateway.acl.delegation import (
    DelegationError,
    digest,
    parse_link,
    root_ref,
    sign_link,
)
from gateway.acl.dlg_verify import verify_chain
from gateway.identity import KeyPair, generate_keypair
from gateway.messages import open_sealed
from tests.helpers import REPO, Running, World
from tests.webapp_node import Driver

WEBAPP = REPO / "gateway" / "webapp"
DRIVER = WEBAPP / "test" / "delegation.mjs"
DOCS = REPO / "docs"
NOW = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # a Tuesday, 10:00 UTC
T = int(NOW.timestamp())
DAY = 86400
GW = "vtUM9l7b2OMczorIPUHTLAillHUniJV6TW4yD3UwcbU"
DOOR = "front-door"


@pytest.fixture(scope="module")
def js() -> Iterator[Driver]:
    d = Driver(DRIVER, "jose")
    yield d
    d.close()


@pytest.fixture(scope="module")
def keys(js: Driver) -> dict[str, KeyPair]:
    """Python key pairs, each also imported into its own Node store (same key both sides)."""
    out = {n: generate_keypair() for n in ("alice", "cleaner", "helper")}
    for name, kp in out.items():
        info = js.ok("importPem", store=name, pem=kp.private_pem().decode())
        assert info["id"] == kp.id
    return out


def _grant(kp: KeyPair, **kw: Any) -> Grant:
    args: dict[str, Any] = {
        "things": [DOOR, "garage"],
        "ops": ["invokeaction", "readproperty", "observeproperty"],
        "exp": T + 60 * DAY,
        "schedule": "mon-fri 08:00-18:00",
        "delegate": 2,
    }
    args.update(kw)
    return Grant.for_key(kp.public, **args)


def _acl(*grants: Grant) -> Acl:
    return Acl(gateway=GW, version=1, iat=T, grants=grants, tz="UTC")


def _mine(grant: Grant) -> dict[str, Any]:
    """The grant as GET /acl/mine shows it (rightsview: to_json without key material)."""
    out = grant.to_json()
    out.pop("jwk", None)
    out.pop("sub", None)
    return out


def _b64json(seg: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def _link_args(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "gatewayId": GW,
        "things": [DOOR],
        "ops": ["invokeaction"],
        "exp": T + 7 * DAY,
        "schedule": "tue 09:00-12:00",
        "uses": 4,
        "depth": 1,
        "now": T - 60,
    }
    args.update(kw)
    return args


# -------------------------------------------------------------------- (a) cross vectors
def _doc_vector() -> dict[str, Any]:
    text = (DOCS / "acl.md").read_text(encoding="utf-8")
    section = text[text.index("## 6. Delegation") :]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    vec: dict[str, Any] = json.loads(block.group(1))
    return vec


def test_digest_root_ref_and_parse_agree_with_python_on_the_doc_vector(js: Driver) -> None:
    vec = _doc_vector()
    link = vec["chain"][0]
    py = parse_link(link)
    assert js.ok("digest", text=link)["digest"] == digest(link)
    ref = js.ok("rootRef", gatewayId=vec["acl"]["gateway"], issuerId=py.iss)["ref"]
    assert ref == root_ref(vec["acl"]["gateway"], py.iss) == py.prev
    got = js.ok("parseLink", text=link)
    for name in ("iss", "sub", "aud", "iat", "exp", "jti", "prev", "depth", "nbf", "uses"):
        assert got[name] == getattr(py, name), name
    assert got["things"] == list(py.things) and got["affordances"] == list(py.affordances)
    assert got["ops"] == sorted(py.ops) and got["schedule"] == py.schedule.spec  # type: ignore[union-attr]
    assert got["jwk"] == py.jwk
    # the holder's app accepts the chain for its own key only
    gw = vec["acl"]["gateway"]
    assert js.ok("readChain", chain=vec["chain"], gatewayId=gw, holder=vec["holder"])
    wrong = vec["refused"][0]
    assert js.error("readChain", chain=wrong["chain"], holder=wrong["holder"])["code"] == (
        "delegation_wrong_holder"
    )
    assert js.error("readChain", chain=vec["chain"], gatewayId="x" * 43)["code"] == (
        "delegation_malformed"
    )


def test_a_link_signed_in_js_verifies_in_python_and_extends(
    js: Driver, keys: dict[str, KeyPair]
) -> None:
    alice, cleaner, helper = keys["alice"], keys["cleaner"], keys["helper"]
    grant = _grant(alice)
    acl = _acl(grant)
    text = js.ok("signLink", store="alice", to=cleaner.id, grant=_mine(grant), **_link_args())[
        "text"
    ]
    link = parse_link(text)  # the Python parser takes it
    header, payload, _ = text.split(".")
    assert _b64json(header) == {"alg": "ES256", "typ": "streembit-dlg+jws", "jwk": alice.public.jwk}
    claims = _b64json(payload)
    # byte for byte the payload sign_link writes (sorted keys, no whitespace)
    assert base64.urlsafe_b64decode(payload + "==").decode() == json.dumps(
        claims, separators=(",", ":"), sort_keys=True
    )
    assert set(claims) == {
        "iss", "sub", "aud", "iat", "exp", "jti", "prev", "things", "affordances", "ops",
        "depth", "schedule", "uses",
    }  # fmt: skip
    assert link.prev == root_ref(GW, alice.id) and link.iss == alice.id
    chain = verify_chain([text], acl=acl, gateway_id=GW, holder=cleaner.id, now=NOW)
    assert chain.rule == f"dlg:{alice.id[:8]}>{cleaner.id[:8]}"
    # the cleaner's app extends the chain it holds: prev = SHA-256 of the parent link
    second = js.ok(
        "signLink",
        store="cleaner",
        to=helper.id,
        parentChain=[text],
        **_link_args(uses=2, depth=0, schedule="tue 10:00-11:00"),
    )["text"]
    assert parse_link(second).prev == digest(text)
    chain = verify_chain([text, second], acl=acl, gateway_id=GW, holder=helper.id, now=NOW)
    assert chain.holder == helper.id and len(chain.links) == 2
    # the same in Python and JS: a Python extension of the JS link verifies too
    py_second = sign_link(
        cleaner, to=helper.id, gateway_id=GW, things=[DOOR], ops=["invokeaction"],
        exp=T + 2 * DAY, schedule="tue 09:00-10:00", uses=1, parent=text, now=T - 30,
    )  # fmt: skip
    verify_chain([text, py_second], acl=acl, gateway_id=GW, holder=helper.id, now=NOW)


def test_a_python_chain_is_read_by_js(js: Driver, keys: dict[str, KeyPair]) -> None:
    alice, cleaner, helper = keys["alice"], keys["cleaner"], keys["helper"]
    first = sign_link(
        alice, to=cleaner.id, gateway_id=GW, things=[DOOR], affordances=["unlock", "lock"],
        ops=["invokeaction", "readproperty"], exp=T + 5 * DAY, nbf=T - 10, depth=1,
        schedule="tue 09:00-12:00", uses=9, now=T - 60,
    )  # fmt: skip
    second = sign_link(
        cleaner, to=helper.id, gateway_id=GW, things=[DOOR], affordances=["unlock"],
        ops=["invokeaction"], exp=T + 2 * DAY, schedule="tue 10:00-11:00", uses=3,
        parent=first, now=T - 5,
    )  # fmt: skip
    links = js.ok("readChain", chain="~".join([first, second]), gatewayId=GW, holder=helper.id)
    assert [x["text"] for x in links] == [first, second]
    assert links[1]["prev"] == digest(first) and links[0]["nbf"] == T - 10
    # a chain file (one link per line) reads the same
    assert js.ok("readChain", chain=f"{first}\n{second}\n", holder=helper.id)[1]["uses"] == 3
    tds = [
        {
            "title": "Front door",
            "base": f"http://x/things/{DOOR}/",
            "properties": {"state": {"readOnly": True, "observable": True}},
            "actions": {"unlock": {}, "lock": {}},
        },
        {"title": "Garage", "base": "http://x/things/garage/", "actions": {"open": {}}},
    ]
    rights = js.ok("chainRights", chain=[first, second], tds=tds, holder=helper.id)
    assert rights["role"] == "delegated"
    assert rights["things"] == {
        DOOR: {
            "type": "lock",
            "title": "Front door",
            "properties": {},
            "actions": {"unlock": ["invokeaction"]},
            "events": {},
        }
    }
    assert rights["chain"]["exp"] == T + 2 * DAY and rights["chain"]["uses"] == 3
    # tampered, reordered, another's: refused with the gateway's codes
    forged = second[:-6] + ("AAAAAA" if not second.endswith("AAAAAA") else "QQQQQQ")
    assert js.error("readChain", chain=[first, forged])["code"] == "delegation_bad_signature"
    assert js.error("readChain", chain=[second, first])["code"] == "delegation_malformed"
    assert js.error("readChain", chain=[first], holder=helper.id)["code"] == (
        "delegation_wrong_holder"
    )
    assert js.error("readChain", chain=["x.y.z"])["code"] == "delegation_malformed"


def test_the_owner_app_keeps_delegate_and_revoked_delegations(
    js: Driver, keys: dict[str, KeyPair]
) -> None:
    """An ACL with `delegate` and `revoked_delegations` goes through the app's ACL editor
    byte for byte as Python writes it (nothing dropped when the owner edits another grant)."""
    acl = Acl(
        gateway=GW,
        version=3,
        iat=T,
        grants=(_grant(keys["alice"], delegate=3), _grant(keys["cleaner"], delegate=0)),
        tz="UTC",
        revoked_delegations=frozenset({"jti-2", "jti-1"}),
    )
    payload = acl.to_json()
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    assert js.ok("aclText", acl=payload)["text"] == text
    bad = {**payload, "grants": [{**payload["grants"][0], "delegate": 5}]}
    assert js.error("aclText", acl=bad)["code"] == "acl_malformed"


def test_js_sets_since_as_python_so_a_regrant_does_not_revive_old_links(
    js: Driver, keys: dict[str, KeyPair]
) -> None:
    """`since` (docs/acl.md §6.4): set when delegation starts, kept on later edits, set anew
    when a revoked subject is granted again; the app's editor and `with_grant` agree."""
    from gateway.acl.document import with_grant, without_subject

    alice = keys["alice"]
    base = Acl(gateway=GW, version=1, iat=T, grants=(), tz="UTC")
    steps = [("grant", T + 10), ("edit", T + 20), ("revoke", T + 30), ("grant", T + 40)]
    py, doc = base, base.to_json()
    for what, now in steps:
        if what == "revoke":
            py = without_subject(py, alice.id, now=now)
            doc = js.ok("withoutSubject", acl=doc, sub=alice.id, now=now)
        else:
            grant = _grant(alice, delegate=2, exp=T + 60 * DAY if what == "edit" else None)
            py = with_grant(py, grant, now=now)
            doc = js.ok("withGrant", acl=doc, grant=grant.to_json(), now=now)
        assert doc == py.to_json(), what
    assert py.grant_for(alice.id) is not None
    assert py.grant_for(alice.id).since == T + 40  # type: ignore[union-attr]


# ---------------------------------------------------------------- (b) no widening in JS
WIDENINGS = [
    ("things", {"things": ["living-room"]}, "delegation_widens", "Things outside"),
    ("ops", {"ops": ["writeproperty"]}, "delegation_widens", "operations outside"),
    ("exp", {"exp": T + 61 * DAY, "now": T + 40 * DAY}, "delegation_widens", "ends after"),
    ("schedule", {"schedule": "sat 09:00-12:00"}, "delegation_widens", "schedule"),
    ("no schedule", {"schedule": None}, "delegation_widens", "schedule"),
    ("depth", {"depth": 2}, "delegation_too_deep", "at most 1 more"),
    ("lifetime", {"exp": T + 31 * DAY}, "delegation_malformed", "30 days"),
]


@pytest.mark.parametrize(
    ("label", "change", "code", "words"), WIDENINGS, ids=[w[0] for w in WIDENINGS]
)
def test_js_refuses_to_sign_a_wider_link(
    js: Driver, keys: dict[str, KeyPair], label: str, change: dict[str, Any], code: str, words: str
) -> None:
    grant = _grant(keys["alice"], exp=T + 60 * DAY)
    err = js.error(
        "signLink", store="alice", to=keys["cleaner"].id, grant=_mine(grant), **_link_args(**change)
    )
    assert err["code"] == code, err
    assert words in err["reason"], err


def test_js_refuses_to_widen_a_held_chain_and_a_grant_without_delegate(
    js: Driver, keys: dict[str, KeyPair]
) -> None:
    alice, cleaner, helper = keys["alice"], keys["cleaner"], keys["helper"]
    first = sign_link(
        alice, to=cleaner.id, gateway_id=GW, things=[DOOR], ops=["invokeaction"],
        exp=T + 5 * DAY, depth=1, uses=4, now=T - 60,
    )  # fmt: skip
    ext = _link_args(schedule=None, depth=0, exp=T + 2 * DAY)
    for change, words in (
        ({"uses": None}, "use count of at most 4"),
        ({"uses": 5}, "use count of at most 4"),
        ({"exp": T + 6 * DAY}, "ends after"),
        ({"things": ["*"]}, "Things outside"),
    ):
        err = js.error(
            "signLink", store="cleaner", to=helper.id, parentChain=[first], **{**ext, **change}
        )
        assert (err["code"], words in err["reason"]) == ("delegation_widens", True), err
    no = _grant(alice, delegate=0)
    err = js.error("signLink", store="alice", to=cleaner.id, grant=_mine(no), **_link_args())
    assert err["code"] == "delegation_not_allowed" and "may not be passed on" in err["reason"]
    # an admin grant counts as everything: "*" may be passed on under it
    admin = _grant(alice, role="admin", schedule=None, exp=None)
    js.ok("signLink", store="alice", to=cleaner.id, grant=_mine(admin), **_link_args(things=["*"]))


# ------------------------------------------------------ (c) a JS holder and the gateway
def test_js_token_embeds_the_key_and_p2p_carries_dlg(js: Driver, keys: dict[str, KeyPair]) -> None:
    cleaner = keys["cleaner"]
    token = js.ok("token", store="cleaner", gatewayId=GW, embedKey=True)["token"]
    header = _b64json(token.split(".")[0])
    assert header == {"alg": "ES256", "typ": "JWT", "kid": cleaner.id, "jwk": cleaner.public.jwk}
    plain = js.ok("token", store="cleaner", gatewayId=GW)["token"]
    assert "jwk" not in _b64json(plain.split(".")[0])
    gw = generate_keypair()
    chain = ["a.b.c", "d.e.f"]
    sealed = js.ok(
        "seal",
        store="cleaner",
        recipientJwk=gw.public.jwk,
        body={"op": "invokeaction", "thing": DOOR, "name": "unlock", "dlg": chain},
    )["token"]
    msg = open_sealed(sealed, recipient=gw, replay=None)
    assert msg.claims["dlg"] == chain and msg.sender.id == cleaner.id
    err = js.error(
        "seal",
        store="cleaner",
        recipientJwk=gw.public.jwk,
        body={"op": "aclpush", "input": "x", "dlg": chain},
    )
    assert err["code"] == "bad_format" and "dlg" in err["reason"]
    stored = js.ok("storeChain", store="cleaner", gatewayId=GW, links=chain)
    assert stored == {"links": chain, "other": None}


async def test_a_js_holder_unlocks_through_a_running_gateway(
    js: Driver, world: World, running: Running
) -> None:
    """Alice's key (granted delegate 1) signs in JS; the cleaner's JS client (GatewayHttp with
    the chain: Streembit-Delegation header + jwk token) unlocks; the use count then ends it."""
    alice, cleaner = world.user, world.stranger
    for name, kp in (("gw-alice", alice), ("gw-cleaner", cleaner)):
        js.ok("importPem", store=name, pem=kp.private_pem().decode())
    grant = Grant.for_key(
        alice.public, things=[DOOR], ops=["invokeaction", "readproperty"], delegate=1
    )
    world.install(grant)
    running.gw.acl.reload_if_changed()
    gw_id = world.gw_key.id
    now = int(time.time())
    link = js.ok(
        "signLink", store="gw-alice", to=cleaner.id, grant=_mine(grant), gatewayId=gw_id,
        things=[DOOR], ops=["invokeaction", "readproperty"], exp=now + 3600, uses=2, depth=0,
    )["text"]  # fmt: skip

    def call(op: str, name: str, delegation: list[str] | None) -> dict[str, Any]:
        return js.call(
            "http", store="gw-cleaner", base=running.url, gatewayId=gw_id, op=op, thing=DOOR,
            name=name, delegation=delegation,
        )  # fmt: skip

    loop = asyncio.get_running_loop()
    out = await loop.run_in_executor(None, call, "invoke", "unlock", None)
    assert out["error"]["status"] == 401, out  # without the chain: an unknown key
    out = await loop.run_in_executor(None, call, "invoke", "unlock", [link])
    assert "ok" in out, out
    out = await loop.run_in_executor(None, call, "read", "state", [link])
    assert out.get("ok", {}).get("out") == "unlocked", out
    out = await loop.run_in_executor(None, call, "invoke", "lock", [link])
    assert out["error"]["code"] in ("delegation_used_up", "forbidden"), out
    out = await loop.run_in_executor(None, call, "invoke", "unlock", [link])
    assert out["error"]["code"] == "delegation_used_up", out


def test_python_refuses_what_js_refuses(keys: dict[str, KeyPair]) -> None:
    """Sanity: the link JS refuses to sign (wider things) is refused by the gateway as well."""
    alice, cleaner = keys["alice"], keys["cleaner"]
    acl = _acl(_grant(alice))
    wide = sign_link(
        alice, to=cleaner.id, gateway_id=GW, things=["living-room"], ops=["invokeaction"],
        exp=T + DAY, schedule="tue 09:00-12:00", now=T - 60,
    )  # fmt: skip
    with pytest.raises(DelegationError) as info:
        verify_chain([wide], acl=acl, gateway_id=GW, holder=cleaner.id, now=NOW)
    assert info.value.code == "delegation_widens"


# ------------------------------------------------------------------------- (d) browsers
async def test_browser_alice_passes_the_front_door_to_her_cleaner(tmp_path: Path) -> None:
    """The owner grants Alice "can unlock" with "May pass it on: one step"; Alice's app signs,
    offline, a link for her cleaner's key (scanned or pasted: pasted here) from the front
    door's card; the cleaner's app imports it, shows what it allows and until when, and
    unlocks; the gateway audits the cleaner's unlock with the chain's rule."""
    tb = pytest.importorskip("tests.test_webapp_browser")
    tb.need_chromium()
    async with contextlib.AsyncExitStack() as stack:
        gw = await stack.enter_async_context(tb.demo_gateway(tmp_path))
        owner_b = await stack.enter_async_context(tb.browser(tmp_path, "owner"))
        alice_b = await stack.enter_async_context(tb.browser(tmp_path, "alice", (390, 844)))
        cleaner_b = await stack.enter_async_context(tb.browser(tmp_path, "cleaner", (390, 844)))
        owner, alice, cleaner = owner_b.page, alice_b.page, cleaner_b.page
        await asyncio.gather(
            alice.set_size(390, 844, mobile=True), cleaner.set_size(390, 844, mobile=True)
        )
        await asyncio.gather(*(tb.open_app(gw, p) for p in (owner, alice, cleaner)))
        await tb.become_owner(gw, owner, tmp_path)

        # the owner grants Alice the front door, and that she may pass it on one step
        alice_key = await tb.create_key(alice)
        await tb.go_screen(owner, "owner")
        depth = tb.js("T.field('May pass it on')")
        assert await owner.eval(tb.js(f"!!{depth}")), "missing UI: 'May pass it on' in the form"
        await owner.eval(tb.js(f"({depth}.value = '1') && true"))
        await tb.grant(owner, alice_key, "can unlock", ["front-door"])
        assert "May pass it on: 1 step(s)" in await owner.eval(
            "document.querySelector('ul.grants').textContent"
        )

        # Alice: "Pass on…" on her front door card; the cleaner's key pasted; signed
        cleaner_key = await tb.create_key(cleaner)
        cleaner_id = await tb.key_id(cleaner)
        await tb.refresh_things(alice)
        await tb.wait(
            alice, "!!T.button('Pass on…', T.card('Front door'))", "Alice's Pass on… button"
        )
        await tb.mark_stale(alice, "pass")
        await tb.click_button(alice, "Pass on…", "T.card('Front door')")
        await tb.wait_rendered(alice, "pass")
        key_box = await alice.eval(tb.js("(T.field('Their public key') || {}).id"))
        assert key_box, "missing UI: no 'Their public key' field on the Pass on screen"
        await alice.type(f"#{key_box}", cleaner_key)
        picked = await alice.eval(
            "[...document.querySelectorAll('form.pass-form input[type=checkbox]:checked')]"
            ".map((i) => i.value)"
        )
        assert "front-door" in picked and "invokeaction" in picked, picked
        await tb.click_button(alice, "Sign and show", "document.querySelector('form.pass-form')")
        chain = await tb.wait(
            alice,
            "(document.querySelector('.pass-form .note.error') || {}).textContent"
            " || (document.querySelector('textarea.chain-text') || {}).value",
            "the signed link",
        )
        assert chain.startswith("eyJ"), chain
        link = parse_link(chain)  # one link: Alice's grant is the root
        assert (link.sub, link.things, link.depth) == (cleaner_id, ("front-door",), 0)
        assert await alice.eval("!!document.querySelector('.pass-result svg.qr')")
        await alice.eval("document.querySelector('.pass-result').scrollIntoView(); true")
        shots = [await tb._shot(alice, tmp_path, "webapp-pass-on-390x844.png", 390, 844)]

        # the cleaner imports it (pasted; the QR code holds the same text) and unlocks
        await tb.go_screen(cleaner, "pass")
        box = await cleaner.eval(tb.js("(T.field('Access text') || {}).id"))
        assert box, "missing UI: no 'Access text' field on the Pass on screen"
        await cleaner.type(f"#{box}", chain)
        await tb.mark_stale(cleaner, "things")
        await tb.click_button(cleaner, "Use this access")
        await tb.wait_rendered(cleaner, "things")
        await tb.wait(
            cleaner, "!!T.button('Unlock…', T.card('Front door'))", "the cleaner's Unlock button"
        )
        words = await cleaner.eval(tb.js("T.screen('things').textContent"))
        assert "Access passed on to you" in words and "until" in words, words
        assert "access passed on" in await cleaner.eval(
            "document.getElementById('who').textContent"
        )
        msg = await tb.unlock(cleaner)
        assert "refused" not in msg, msg
        await tb.wait(cleaner, f"{tb.lock_state()} === 'unlocked'", "the unlocked door (cleaner)")
        await cleaner.eval("window.scrollTo(0, 0); document.activeElement.blur(); true")
        shots.append(
            await tb._shot(cleaner, tmp_path, "webapp-delegated-things-390x844.png", 390, 844)
        )
        records = await gw.audit()
        mine = [
            r
            for r in records
            if r.get("subject") == cleaner_id and r.get("op") == "invokeaction" and r["allowed"]
        ]
        assert mine and all(r["rule"].startswith("dlg:") for r in mine), records[-5:]

        # the cleaner's Pass on screen: what it holds, until when; it may not go further
        await tb.go_screen(cleaner, "pass")
        text = await cleaner.eval(tb.js("T.screen('pass').textContent"))
        assert "Front door" in text and "may not be passed on further" in text, text

        tb.SHOTS_DIR.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, tb.SHOTS_DIR / shot.name)
