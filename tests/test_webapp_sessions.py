"""Session keys in the web app (docs/protocol.md §8; docs/webapp-lib.md §5): the browser
library's sessions.js and P2PConnection (gateway/webapp/src/lib/) in Node, driven through
gateway/webapp/test/p2p.mjs, against the gateway's own Python code and a real gateway.

1. JS derives the keys of tests/vectors/sessions.json and opens every vector as the Python
   reference does (claims or code);
2. a JS session frame opens with `SessionKeys.open`, a Python one in JS (both directions, with
   the refusals); the `ses` offer and announcement are accepted and refused as in Python;
3. end to end: the JS client's second Thing request is a session frame, the gateway's answers
   (session frames) open, admin operations stay sealed, a lost session is resent sealed, and
   with sessions off every frame is sealed.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import OctKey

from gateway.errors import MessageError
from gateway.identity import KeyPair, load_keypair
from gateway.messages import Opened, ReplayCache, open_sealed
from gateway.messages.claims import check_body
from gateway.messages.codec import b64url_encode
from gateway.messages.sessionkeys import SessionKeys, parse_announcement
from gateway.state import KEY_FILE
from tests.test_messages import keypair_from_jwk
from tests.test_webapp_p2p import net  # noqa: F401  (the module's gateway and seed node)
from tests.webapp_node import P2PDriver

VECTORS = Path(__file__).parent / "vectors" / "sessions.json"
MESSAGES = Path(__file__).parent / "vectors" / "messages.json"
READ = {"thing": "front-door", "name": "state"}
UNLOCK = {"thing": "front-door", "name": "unlock"}
WRITE = {"thing": "living-room", "name": "targetTemperature", "input": 20}
YEARS_S = 100 * 365 * 86_400  # a clock leeway that turns the time checks off


@pytest.fixture(scope="module")
def drv() -> Iterator[P2PDriver]:
    d = P2PDriver()
    yield d
    d.close()


def _vector_keys() -> tuple[KeyPair, KeyPair]:
    doc = json.loads(MESSAGES.read_text())
    return keypair_from_jwk(doc["keys"]["sender"]), keypair_from_jwk(doc["keys"]["recipient"])


def _result(out: dict[str, Any]) -> Any:
    return out["ok"]["claims"] if "ok" in out else out["error"]["code"]


# ---------------------------------------------------------------------------- 1. vectors
def test_js_derives_the_vector_keys_and_opens_every_vector(drv: P2PDriver) -> None:
    doc = json.loads(VECTORS.read_text())
    ids = {k: doc[k] for k in ("secret", "sid", "peer", "gateway")}
    keys = drv.ok("sessionDerive", **ids)
    assert keys == {"p2g": doc["key_peer_to_gateway"], "g2p": doc["key_gateway_to_peer"]}
    names = set()
    for v in doc["vectors"]:
        out = drv.call("sessionOpen", **ids, role=v["to"], token=v["token"], now=v["now"])
        expected = v.get("expect_claims", v.get("expect_error"))
        assert expected is not None
        assert _result(out) == expected, f"{v['name']}: JS {_result(out)} != {expected}"
        names.add(v["name"])
    assert {"request", "reply", "reflected", "aclpush", "offer_inside", "expired"} <= names


# ------------------------------------------------------------------ 2. JS <-> Python frames
def _pair(ttl: int = 600) -> tuple[dict[str, Any], SessionKeys, SessionKeys]:
    """Fresh secret and sid: (driver args, Python's gateway end, Python's peer end)."""
    peer, gw = _vector_keys()
    secret, sid = secrets.token_bytes(32), b64url_encode(secrets.token_bytes(16))
    args = {"secret": b64url_encode(secret), "sid": sid, "peer": peer.id, "gateway": gw.id}
    ends = [
        SessionKeys.derive(secret, sid, role=role, local=me.public, remote=other.public, ttl_s=ttl)
        for role, me, other in (("gateway", gw, peer), ("peer", peer, gw))
    ]
    return args, ends[0], ends[1]


def _py_code(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except MessageError as exc:
        return exc.code


def test_a_js_session_frame_opens_in_python(drv: P2PDriver) -> None:
    args, gw_end, _ = _pair()
    body = {"op": "writeproperty", "thing": "hall", "name": "setpoint", "input": {"c": 21.5}}
    jti, now = "J" * 22, int(time.time())
    token = drv.ok("sessionSeal", **args, role="peer", typ="request", body=body, jti=jti)["token"]
    replay = ReplayCache()
    opened = gw_end.open(token, replay=replay)
    assert opened.session == args["sid"] and opened.sender.id == args["peer"]
    assert opened.claims == {
        "iss": args["peer"], "aud": args["gateway"], "iat": opened.claims["iat"],
        "exp": opened.claims["iat"] + 30, "jti": jti, "typ": "request", **body,
    }  # fmt: skip
    assert abs(opened.claims["iat"] - now) <= 2
    assert _py_code(gw_end.open, token, replay=replay) == "replayed"
    head, ek, iv, ct, tag = token.split(".")
    flipped = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    assert _py_code(gw_end.open, ".".join((head, ek, iv, ct, flipped)), replay=None) == (
        "decrypt_failed"
    )
    # our own direction's key cannot open it (no reflection), nor another pair's
    _, other_gw, own_peer = _pair()
    assert _py_code(own_peer.open, token, replay=None) == "unknown_session"
    other_gw.sid = args["sid"]
    assert _py_code(other_gw.open, token, replay=None) == "decrypt_failed"
    # the operations that need a signature: sealed as frames by JS, refused by Python
    aclpush = drv.ok(
        "sessionSeal", **args, role="peer", typ="request", body={"op": "aclpush", "input": "x"}
    )["token"]
    assert _py_code(gw_end.open, aclpush, replay=None) == "needs_signature"
    audit = drv.ok("sessionSeal", **args, role="peer", typ="request", body={"op": "auditrecords"})
    assert _py_code(gw_end.open, audit["token"], replay=None) == "needs_signature"
    # what Python's seal refuses, JS's refuses with the same code
    for body, ttl in (({"op": "things", "ses": {"v": 1, "k": "A" * 43}}, 30),
                      ({"op": "things", "jti": "x"}, 30), ({"op": "nope"}, 30),
                      ({"op": "td"}, 30), ({"op": "things"}, 301)):  # fmt: skip
        js = drv.call("sessionSeal", **args, role="peer", typ="request", body=body, ttl=ttl)
        py = _py_code(gw_end.seal, body, "request", ttl=ttl)
        assert js["error"]["code"] == py, f"{body}: JS {js} != Python {py}"


def test_a_python_session_frame_opens_in_js(drv: P2PDriver) -> None:
    args, gw_end, peer_end = _pair()
    now = int(time.time())
    reply = gw_end.seal({"re": "R" * 22, "status": 200, "output": [1, "x"]}, "reply")
    opened = drv.ok("sessionOpen", **args, role="peer", token=reply, replay=True)
    assert opened["session"] == args["sid"] and opened["sender"] == {"id": args["gateway"]}
    claims = opened["claims"]
    assert claims["typ"] == "reply" and claims["output"] == [1, "x"] and claims["re"] == "R" * 22
    assert claims["iss"] == args["gateway"] and claims["aud"] == args["peer"]
    assert abs(claims["iat"] - now) <= 2
    again = drv.call("sessionOpen", **args, role="peer", token=reply, replay=True)
    assert again["error"]["code"] == "replayed"
    event = gw_end.seal({"thing": "t", "name": "n", "seq": 3, "data": None}, "event")
    cases = {
        "fresh": (event, {}, None),
        "past_ttl": (event, {"expired": True}, "session_expired"),
        "expired": (event, {"now": now + 60}, "expired"),
        "not_yet_valid": (event, {"now": now - 60}, "not_yet_valid"),
        "reflected": (peer_end.seal({"op": "things"}, "request"), {}, "decrypt_failed"),
        "as_gateway": (event, {"role": "gateway"}, "decrypt_failed"),
    }
    for name, (token, extra, code) in cases.items():
        out = drv.call("sessionOpen", **{**args, "role": "peer", **extra}, token=token)
        got = _result(out) if code else out["ok"]["claims"]["seq"]
        assert got == (code or 3), f"{name}: {out}"
        if name == "as_gateway":  # and Python agrees on every refusal it can reproduce
            assert _py_code(gw_end.open, token, replay=None) == code
    _, other, _ = _pair()
    elsewhere = other.seal({"thing": "t", "name": "n", "seq": 0}, "event")
    out = drv.call("sessionOpen", **args, role="peer", token=elsewhere)
    assert out["error"]["code"] == "unknown_session"


def _offer_cases() -> list[dict[str, Any]]:
    k = b64url_encode(bytes(32))
    read = {"op": "readproperty", **READ}
    offers: list[Any] = [
        {"v": 1, "k": k}, {"v": True, "k": k}, {"v": 2, "k": k}, {"v": 1, "k": "A" * 42 + "B"},
        {"v": "1", "k": k}, {"v": 1}, {"k": k}, {"v": 1, "k": k, "x": 1}, {"v": 1, "k": k[:-1]},
        {"v": 1, "k": k + "A"}, {"v": 1, "k": k[:-1] + "+"}, {"v": 1, "k": 7}, [1, k], k, None,
    ]  # fmt: skip  ({"v": 1.0}: Python only, JSON.parse cannot tell 1.0 from 1)
    cases = [{**read, "ses": offer} for offer in offers]
    cases += [{"op": op, "ses": {"v": 1, "k": k}, **extra} for op, extra in (
        ("things", {}), ("td", {"thing": "x"}), ("aclpush", {"input": "j"}),
        ("claim", {"input": {}}), ("punch", {"input": {}}), ("auditcheckpoint", {}),
        ("auditrecords", {}),
    )]  # fmt: skip
    return cases


def test_offers_and_announcements_are_refused_as_in_python(drv: P2PDriver) -> None:
    for body in _offer_cases():
        py = _py_code(check_body, "request", body)
        out = drv.call("checkOffer", body=body)
        js = out["error"]["code"] if "error" in out else None
        assert js == py, f"{body}: JS {js} != Python {py}"
    sid = "Q" * 22
    for value in (
        {"id": sid, "ttl": 600}, {"id": sid, "ttl": 1}, {"id": sid, "ttl": 3600},
        {"id": sid, "ttl": 3601}, {"id": sid, "ttl": 0}, {"id": sid, "ttl": True},
        {"id": sid, "ttl": 600.5}, {"id": sid, "ttl": "600"}, {"id": sid + "Q", "ttl": 600},
        {"id": sid[:-1] + "=", "ttl": 600}, {"id": sid}, {"id": sid, "ttl": 6, "x": 0}, [sid, 6],
        {"id": sid[:-1] + "R", "ttl": 600}, {"id": sid, "ttl": 40}, {"id": sid, "ttl": 41},
    ):  # fmt: skip
        py = _py_code(lambda v: list(parse_announcement(v)), value)
        out = drv.call("parseAnnouncement", value=value)
        js = [out["ok"]["sid"], out["ok"]["ttl"]] if "ok" in out else out["error"]["code"]
        assert js == py, f"{value}: JS {js} != Python {py}"
    fresh = drv.ok("newOffer")
    check_body("request", {"op": "things", "ses": fresh["offer"]})
    assert fresh["offer"]["v"] == 1 and len(fresh["secret"]) == 64
    assert b64url_encode(bytes.fromhex(fresh["secret"])) == fresh["offer"]["k"]


# ---------------------------------------------------------------- 3. against a real gateway
@pytest.fixture(scope="module")
def live(net: dict[str, Any], drv: P2PDriver) -> dict[str, Any]:  # noqa: F811
    for who in ("alice", "owner", "mallory"):
        drv.ok("importPem", store=who, pem=(Path(net["k"]) / who).read_text())
    rec = drv.ok("find", lookup=[net["gw_lookup"]], gatewayId=net["gw"])
    return {**net, "jwk": rec["jwk"]}


def _algs(drv: P2PDriver, url: str) -> tuple[list[str | None], list[str | None]]:
    frames = drv.ok("frames", url=url, clear=True)
    sent = [f["alg"] for f in frames if f["dir"] == "sent"]
    return sent, [f["alg"] for f in frames if f["dir"] == "received"]


def _connect(drv: P2PDriver, live: dict[str, Any], name: str, store: str, **opts: Any) -> None:
    drv.ok("connect", name=name, store=store, url=live["ws"], gatewayJwk=live["jwk"], opts=opts)
    drv.ok("frames", clear=True)


def _wait(pred: Any, timeout: float = 10.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := pred():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_the_js_client_moves_to_session_frames(drv: P2PDriver, live: dict[str, Any]) -> None:
    _connect(drv, live, "s1", "alice")
    assert drv.ok("session", name="s1") is None
    state = drv.ok("request", name="s1", op="readproperty", args=READ)
    assert state["status"] == 200 and state["output"] in ("locked", "unlocked")
    session = drv.ok("session", name="s1")
    assert session["usable"] is True and len(session["sid"]) == 22
    action = "lock" if state["output"] == "unlocked" else "unlock"
    drv.ok("observe", conn="s1", stream="s1", thing="front-door", prop="state")
    time.sleep(0.5)  # the subscription is accepted (202) before the change
    done = drv.ok("request", name="s1", op="invokeaction", args={**UNLOCK, "name": action})
    assert done["output"] == ("locked" if action == "lock" else "unlocked")
    seen = _wait(lambda: drv.ok("streamState", stream="s1")["values"])
    assert seen[0]["v"] == done["output"] and seen[0]["seq"] == 0
    assert drv.ok("request", name="s1", op="readproperty", args=READ)["output"] == done["output"]
    forbidden = drv.error("request", name="s1", op="writeproperty", args=WRITE)
    assert forbidden["code"] == "forbidden" and forbidden["status"] == 403
    sent, received = _algs(drv, live["ws"])
    assert sent == ["ECDH-ES"] + ["dir"] * 4, sent
    # the announcement comes sealed; then the replies, the 202 and the event as session frames
    assert received[0] == "ECDH-ES" and received[1:] == ["dir"] * 5, received
    # administrative operations stay sealed on a session (and their answers still arrive)
    audit = drv.error("request", name="s1", op="auditcheckpoint")
    assert audit["code"] == "forbidden" and audit["status"] == 403
    assert _algs(drv, live["ws"])[0] == ["ECDH-ES"]
    assert drv.ok("session", name="s1")["sid"] == session["sid"]  # the same session throughout
    drv.ok("streamState", stream="s1", stop=True)
    drv.ok("close", conn="s1")


def test_an_owner_aclpush_stays_sealed(drv: P2PDriver, live: dict[str, Any]) -> None:
    _connect(drv, live, "o1", "owner")
    drv.ok("request", name="o1", op="things")
    assert drv.ok("request", name="o1", op="readproperty", args=READ)["status"] == 200
    acl = (Path(live["k"]) / "acl.jws").read_text().strip()
    out = drv.call("request", name="o1", op="aclpush", args={"input": acl})
    # the installed ACL pushed again: the gateway's answer (either way) arrives, to a signed push
    assert "ok" in out or out["error"]["code"] not in ("timeout", "needs_signature"), out
    sent, _ = _algs(drv, live["ws"])
    assert sent == ["ECDH-ES", "dir", "ECDH-ES"], sent
    drv.ok("close", conn="o1")


def test_with_sessions_off_every_frame_is_sealed(drv: P2PDriver, live: dict[str, Any]) -> None:
    _connect(drv, live, "off", "alice", sessionKeys=False)
    for _ in range(3):
        assert drv.ok("request", name="off", op="readproperty", args=READ)["status"] == 200
    assert drv.ok("session", name="off") is None
    assert _algs(drv, live["ws"]) == (["ECDH-ES"] * 3, ["ECDH-ES"] * 3)
    drv.ok("close", conn="off")
    # turned off on a live session: our requests are sealed again; the gateway keeps its
    # session until its TTL, and its session frames still open
    _connect(drv, live, "later", "alice")
    for _ in range(2):
        drv.ok("request", name="later", op="readproperty", args=READ)
    drv.ok("tweak", name="later", sessionKeys=False)
    drv.ok("request", name="later", op="readproperty", args=READ)
    sent, received = _algs(drv, live["ws"])
    assert sent == ["ECDH-ES", "dir", "ECDH-ES"] and received == ["ECDH-ES", "dir", "dir"]
    drv.ok("close", conn="later")


def test_a_lost_session_is_resent_sealed_once(drv: P2PDriver, live: dict[str, Any]) -> None:
    _connect(drv, live, "lost", "alice")
    drv.ok("request", name="lost", op="readproperty", args=READ)
    old = drv.ok("session", name="lost")["sid"]
    # our frames now name a session the gateway lacks
    send_key = drv.ok("tweak", name="lost", forget=True)["sendKey"]
    jti = b64url_encode(secrets.token_bytes(16))
    out = drv.ok("request", name="lost", op="readproperty", args=READ, opts={"jti": jti})
    assert out["status"] == 200
    tokens = [f["token"] for f in drv.ok("frames", url=live["ws"]) if f["dir"] == "sent"]
    sent, received = _algs(drv, live["ws"])
    # refused plain (unknown_session), sent again sealed with the same jti and a new offer
    assert sent == ["ECDH-ES", "dir", "ECDH-ES"] and received == ["ECDH-ES", None, "ECDH-ES"]
    # ... and the same iat and exp: a held copy of the session frame, delivered later, is a
    # replay of the resend until both expire (docs/protocol.md §8.1, step 5)
    first, resend = _read_as_gateway(live, tokens[1], send_key), _read_as_gateway(live, tokens[2])
    assert first.session == "B" * 22 and resend.session is None
    for claim in ("jti", "iat", "exp", "op", "thing", "name"):
        assert first.claims[claim] == resend.claims[claim], claim
    assert first.claims["jti"] == jti and "ses" in resend.claims and "ses" not in first.claims
    new = drv.ok("session", name="lost")["sid"]
    assert new not in (old, "B" * 22)
    assert drv.ok("request", name="lost", op="readproperty", args=READ)["status"] == 200
    assert _algs(drv, live["ws"]) == (["dir"], ["dir"])
    # our sending time over (TTL - 40 s): the next Thing request offers a new session, sealed
    drv.ok("tweak", name="lost", stale=True)
    for _ in range(2):
        drv.ok("request", name="lost", op="readproperty", args=READ)
    assert _algs(drv, live["ws"])[0] == ["ECDH-ES", "dir"]
    assert drv.ok("session", name="lost")["sid"] != new
    drv.ok("close", conn="lost")


def _read_as_gateway(live: dict[str, Any], token: str, send_key: str | None = None) -> Opened:
    """What the gateway reads in TOKEN, a sealed message or (SEND_KEY: the JS end's key, hex)
    a session frame; no time or replay checks."""
    gw = load_keypair(Path(live["st"]) / KEY_FILE)
    if send_key is None:
        return open_sealed(token, recipient=gw, replay=None, leeway=YEARS_S)
    peer = load_keypair(Path(live["k"]) / "alice").public
    nothing = OctKey.import_key(bytes(32))  # the gateway's own sending key is not needed
    end = SessionKeys("B" * 22, gw.public, peer, 0.0, math.inf, nothing,
                      OctKey.import_key(bytes.fromhex(send_key)))  # fmt: skip
    return end.open(token, replay=None, leeway=YEARS_S)


def test_an_ungranted_key_gets_its_refusals_over_the_session(
    drv: P2PDriver, live: dict[str, Any]
) -> None:
    _connect(drv, live, "m", "mallory")
    for _ in range(2):
        err = drv.error("request", name="m", op="invokeaction", args=UNLOCK)
        assert err["code"] == "forbidden" and err["status"] == 403
    assert _algs(drv, live["ws"]) == (["ECDH-ES", "dir"], ["ECDH-ES", "dir"])
    drv.ok("close", conn="m")


def test_the_gateway_handle_uses_sessions(drv: P2PDriver, live: dict[str, Any]) -> None:
    drv.ok("gateway", name="g", store="alice", gatewayId=live["gw"], lookup=[live["gw_lookup"]])
    drv.ok("frames", clear=True)
    drv.ok("call", name="g", method="read", args=["front-door", "state"])
    drv.ok("call", name="g", method="read", args=["front-door", "state"])
    assert _algs(drv, live["ws"])[0] == ["ECDH-ES", "dir"]
    assert drv.ok("session", gateway="g")["usable"] is True
    drv.ok("close", name="g")
    drv.ok("gateway", name="g0", store="alice", gatewayId=live["gw"], lookup=[live["gw_lookup"]],
           opts={"sessionKeys": False})  # fmt: skip
    drv.ok("call", name="g0", method="read", args=["front-door", "state"])
    drv.ok("call", name="g0", method="read", args=["front-door", "state"])
    assert _algs(drv, live["ws"]) == (["ECDH-ES"] * 2, ["ECDH-ES"] * 2)
    drv.ok("close", name="g0")
