"""Session keys (docs/protocol.md §8): key derivation, the frame format, every refusal, vectors.

The vectors and the crafted frames are built here with `cryptography` and joserfc directly,
never with the code under test; the format is checked once more by decrypting a frame of the
code under test with plain AES-GCM, as RFC 7516 describes it.

    .venv/bin/python tests/test_sessionkeys.py --write-vectors    # regenerate the tokens
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.jwk import OctKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.errors import MessageError
from gateway.identity import KeyPair, generate_keypair
from gateway.messages import ReplayCache, seal
from gateway.messages import sessionkeys as sk
from gateway.messages.claims import DLG_OPS, check_body
from tests.test_messages import keypair_from_jwk

VECTORS = Path(__file__).parent / "vectors" / "sessions.json"
MESSAGES = Path(__file__).parent / "vectors" / "messages.json"
SECRET = bytes(range(32))  # test-only fixed inputs
SID_BYTES = bytes(range(100, 116))
IAT = 1767225600
REG = jwe.JWERegistry(algorithms=["dir", "A256GCM", "A128GCM", "DEF"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keys() -> tuple[KeyPair, KeyPair]:
    doc = json.loads(MESSAGES.read_text())
    peer = keypair_from_jwk(doc["keys"]["sender"])
    gateway = keypair_from_jwk(doc["keys"]["recipient"])
    return peer, gateway


def _hkdf(direction: bytes, peer: str, gateway: str, sid: bytes = SID_BYTES) -> bytes:
    info = b"streembit-session/1|" + direction + b"|" + peer.encode() + b"|" + gateway.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=sid, info=info).derive(SECRET)


def _frame(key: bytes, claims: dict[str, Any] | bytes, **header: Any) -> str:
    hdr = {"alg": "dir", "enc": "A256GCM", "kid": _b64(SID_BYTES), "cty": "streembit-msg+json"}
    hdr.update(header)
    hdr = {k: v for k, v in hdr.items() if v is not None}
    data = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return jwe.encrypt_compact(hdr, data, OctKey.import_key(key), registry=REG)


def _claims(iss: str, aud: str, typ: str = "request", **body: Any) -> dict[str, Any]:
    return {
        "iss": iss,
        "aud": aud,
        "iat": IAT,
        "exp": IAT + 30,
        "jti": "S" * 22,
        "typ": typ,
        **body,
    }


def build_vectors() -> dict[str, Any]:
    peer, gw = _keys()
    to_gw = _hkdf(b"peer-to-gateway", peer.id, gw.id)
    to_peer = _hkdf(b"gateway-to-peer", peer.id, gw.id)
    read = {"op": "readproperty", "thing": "hall-thermostat", "name": "temperature"}
    request = _claims(peer.id, gw.id, **read)
    reply = _claims(gw.id, peer.id, "reply", re="S" * 22, status=200, output=20.5)
    good = _frame(to_gw, request)
    tampered = good[:-30] + ("A" if good[-30] != "A" else "B") + good[-29:]
    vectors: list[dict[str, Any]] = [
        {"name": "request", "to": "gateway", "token": good, "expect_claims": request},
        {"name": "reply", "to": "peer", "token": _frame(to_peer, reply), "expect_claims": reply},
        {"name": "reflected", "to": "gateway", "token": _frame(to_peer, request)},
        {"name": "tampered", "to": "gateway", "token": tampered},
        {"name": "other_session", "to": "gateway", "token": _frame(to_gw, request, kid="B" * 22)},
        {
            "name": "enc_a128gcm",
            "to": "gateway",
            "token": _frame(to_gw[:16], request, enc="A128GCM"),
        },
        {"name": "zip", "to": "gateway", "token": _frame(to_gw, request, zip="DEF")},
        {"name": "no_cty", "to": "gateway", "token": _frame(to_gw, request, cty=None)},
        {
            "name": "aclpush",
            "to": "gateway",
            "token": _frame(to_gw, _claims(peer.id, gw.id, op="aclpush", input="a.b.c")),
        },
        {
            "name": "offer_inside",
            "to": "gateway",
            "token": _frame(to_gw, {**request, "ses": {"v": 1, "k": _b64(SECRET)}}),
        },
        {
            "name": "issuer_mismatch",
            "to": "gateway",
            "token": _frame(to_gw, {**request, "iss": gw.id}),
        },
        {"name": "expired", "to": "gateway", "token": good, "now": IAT + 60},
    ]
    errors = {
        "reflected": "decrypt_failed",
        "tampered": "decrypt_failed",
        "other_session": "unknown_session",
        "enc_a128gcm": "bad_alg",
        "zip": "bad_format",
        "no_cty": "bad_format",
        "aclpush": "needs_signature",
        "offer_inside": "bad_format",
        "issuer_mismatch": "issuer_mismatch",
        "expired": "expired",
    }
    for v in vectors:
        v.setdefault("now", IAT + 1)
        if v["name"] in errors:
            v["expect_error"] = errors[v["name"]]
    return {
        "description": "Session-key frames (docs/protocol.md §8). Keys: messages.json sender = "
        "peer, recipient = gateway. Open each token with the key of direction `to` at `now`.",
        "secret": _b64(SECRET),
        "sid": _b64(SID_BYTES),
        "peer": peer.id,
        "gateway": gw.id,
        "key_peer_to_gateway": to_gw.hex(),
        "key_gateway_to_peer": to_peer.hex(),
        "vectors": vectors,
    }


def _pair(ttl: float = 600) -> tuple[sk.SessionKeys, sk.SessionKeys]:
    """(peer end, gateway end) of the vectors' session."""
    peer, gw = _keys()
    sid = _b64(SID_BYTES)
    p = sk.SessionKeys.derive(
        SECRET, sid, role="peer", local=peer.public, remote=gw.public, ttl_s=ttl
    )
    g = sk.SessionKeys.derive(
        SECRET, sid, role="gateway", local=gw.public, remote=peer.public, ttl_s=ttl
    )
    return p, g


def test_stored_vectors_derive_and_open_as_documented() -> None:
    doc = json.loads(VECTORS.read_text())
    peer, gw = _keys()
    assert (doc["peer"], doc["gateway"]) == (peer.id, gw.id)
    assert doc["secret"] == _b64(SECRET) and doc["sid"] == _b64(SID_BYTES)
    for direction, name in (
        (sk.TO_GATEWAY, "key_peer_to_gateway"),
        (sk.TO_PEER, "key_gateway_to_peer"),
    ):
        derived = sk.derive_key(SECRET, doc["sid"], direction, peer.id, gw.id)
        assert derived.hex() == doc[name] == _hkdf(direction, peer.id, gw.id).hex()
    p_end, g_end = _pair()
    assert {v["name"] for v in doc["vectors"]} == {v["name"] for v in build_vectors()["vectors"]}
    for v in doc["vectors"]:
        end = g_end if v["to"] == "gateway" else p_end
        if "expect_error" in v:
            with pytest.raises(MessageError) as err:
                end.open(v["token"], replay=ReplayCache(), now=v["now"])
            assert err.value.code == v["expect_error"], v["name"]
        else:
            opened = end.open(v["token"], replay=ReplayCache(), now=v["now"])
            assert opened.claims == v["expect_claims"], v["name"]
            assert opened.session == doc["sid"] and opened.sender == end.remote


def test_a_fresh_vector_set_agrees_with_the_code() -> None:
    p_end, g_end = _pair()
    for v in build_vectors()["vectors"]:
        end = g_end if v["to"] == "gateway" else p_end
        try:
            got = end.open(v["token"], replay=None, now=v["now"]).claims
        except MessageError as exc:
            got = exc.code
        assert got == v.get("expect_claims", v.get("expect_error")), v["name"]


def test_a_frame_of_the_code_is_a_plain_rfc7516_dir_a256gcm_jwe() -> None:
    p_end, g_end = _pair()
    token = p_end.seal({"op": "things"}, "request", now=IAT)
    head, ek, iv, ct, tag = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    assert header == {
        "alg": "dir",
        "enc": "A256GCM",
        "kid": _b64(SID_BYTES),
        "cty": "streembit-msg+json",
    }
    assert ek == ""

    def unb64(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    key = _hkdf(b"peer-to-gateway", p_end.local.id, p_end.remote.id)
    plain = AESGCM(key).decrypt(unb64(iv), unb64(ct) + unb64(tag), head.encode("ascii"))
    claims = json.loads(plain)
    assert claims["op"] == "things" and claims["iss"] == p_end.local.id
    assert claims["aud"] == p_end.remote.id and claims["exp"] == IAT + 30
    assert g_end.open(token, replay=None, now=IAT + 1).claims == claims


def test_replay_is_refused_and_each_direction_has_its_own_key() -> None:
    p_end, g_end = _pair()
    token = p_end.seal({"op": "things"}, "request")
    cache = ReplayCache()
    g_end.open(token, replay=cache)
    with pytest.raises(MessageError, match="replay") as err:
        g_end.open(token, replay=cache)
    assert err.value.code == "replayed"
    with pytest.raises(MessageError) as err:
        p_end.open(token, replay=None)  # our own frame reflected back at us
    assert err.value.code == "decrypt_failed"


def test_sealing_refuses_what_the_other_end_would_refuse() -> None:
    p_end, _ = _pair()
    for body, code in (
        ({"op": "things", "iss": "x"}, "bad_format"),
        ({"op": "things", "ses": {"v": 1, "k": _b64(SECRET)}}, "bad_format"),
        ({"op": "nope"}, "bad_format"),
        ({"op": "readproperty", "thing": "t"}, "missing_claim"),
    ):
        with pytest.raises(MessageError) as err:
            p_end.seal(body, "request")
        assert err.value.code == code, body
    with pytest.raises(MessageError) as err:
        p_end.seal({"op": "things"}, "request", ttl=301)
    assert err.value.code == "too_long_lived"


def test_session_lifetimes_gateway_drops_first_peer_stops_earlier(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr(sk.time, "monotonic", lambda: clock[0])
    p_end, g_end = _pair(ttl=600)
    assert p_end.send_until == 1000 + 600 - sk.RENEW_MARGIN_S
    assert g_end.send_until == g_end.accept_until == 1600
    token = p_end.seal({"op": "things"}, "request")
    clock[0] = 1600.0
    assert not g_end.usable()
    with pytest.raises(MessageError) as err:
        g_end.open(token, replay=None)
    assert err.value.code == "session_expired"
    clock[0] = 1604.0  # the peer still reads a frame the gateway sealed just before its TTL
    reply = _frame(
        _hkdf(b"gateway-to-peer", p_end.local.id, p_end.remote.id),
        _claims(p_end.remote.id, p_end.local.id, "reply", re="S" * 22, status=204),
    )
    assert p_end.open(reply, replay=None, now=IAT + 1).claims["status"] == 204


def test_offer_claim_shape() -> None:
    offer, secret = sk.new_offer()
    assert len(secret) == 32 and sk.offer_secret(offer) == secret
    check_body("request", {"op": "things", "ses": offer})
    for bad, op in (
        ({"v": 2, "k": offer["k"]}, "things"),
        ({"v": True, "k": offer["k"]}, "things"),
        ({"v": 1, "k": offer["k"][:-1]}, "things"),
        ({"v": 1, "k": offer["k"][:-1] + "="}, "things"),
        ({"v": 1, "k": "A" * 42 + "B"}, "things"),  # right shape, not canonical
        ({"v": 1.0, "k": offer["k"]}, "things"),  # the version is the integer 1
        ({"v": 1}, "things"),
        ({"v": 1, "k": offer["k"], "x": 1}, "things"),
        ("k", "things"),
        (offer, "aclpush"),  # admin operations do not start sessions
    ):
        body: dict[str, Any] = {"op": op, "ses": bad}
        if op == "aclpush":
            body["input"] = "a.b.c"
        with pytest.raises(MessageError) as err:
            check_body("request", body)
        assert err.value.code == "bad_format", bad
    peer, gw = _keys()
    with pytest.raises(MessageError):  # and `seal` refuses to send such an offer at all
        seal({"op": "things", "ses": {"v": 2}}, sender=peer, recipient=gw.public, typ="request")


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"id": "A" * 22},
        {"id": "A" * 21, "ttl": 600},
        {"id": "A" * 22, "ttl": 0},
        {"id": "A" * 22, "ttl": 3601},
        {"id": "A" * 22, "ttl": True},
        {"id": 5, "ttl": 600},
        {"id": "A" * 22, "ttl": 600, "k": "x"},
        {"id": "A" * 21 + "B", "ttl": 600},  # not canonical base64url
        {"id": "A" * 22, "ttl": sk.MIN_SESSION_TTL_S - 1},  # no time left to send on it
        {"id": "A" * 22, "ttl": 600.0},
    ],
)
def test_malformed_announcements_are_refused(value: Any) -> None:
    with pytest.raises(MessageError) as err:
        sk.parse_announcement(value)
    assert err.value.code == "bad_format"


def test_session_ops_are_the_thing_operations_only() -> None:
    assert sk.SESSION_OPS == DLG_OPS  # a delegated peer and a session reach the same ops
    assert not sk.SESSION_OPS & {"aclpush", "claim", "transfer", "punch", "auditrecords"}
    assert sk.parse_announcement({"id": "A" * 22, "ttl": sk.MIN_SESSION_TTL_S})[1] > (
        sk.RENEW_MARGIN_S
    )


def test_a_retired_session_sends_nothing_but_still_opens() -> None:
    p_end, g_end = _pair()
    late = g_end.seal({"re": "A" * 22, "status": 200, "output": 1}, "reply")
    p_end.retire()
    assert not p_end.usable()
    assert p_end.open(late, replay=None).claims["output"] == 1


def test_frame_alg_dispatch_is_total() -> None:
    p_end, _ = _pair()
    assert sk.frame_alg(p_end.seal({"op": "things"}, "request")) == "dir"
    for junk in ("", ".", "x.y", "{}", "e30.a.b.c.d", "!!!.a"):
        assert sk.frame_alg(junk) is None


def test_keys_are_bound_to_both_ids_and_the_session_id() -> None:
    peer, gw = _keys()
    other = generate_keypair()
    sid = _b64(SID_BYTES)
    a = sk.derive_key(SECRET, sid, sk.TO_GATEWAY, peer.id, gw.id)
    assert a != sk.derive_key(SECRET, sid, sk.TO_GATEWAY, peer.id, other.id)
    assert a != sk.derive_key(SECRET, sid, sk.TO_GATEWAY, other.id, gw.id)
    assert a != sk.derive_key(SECRET, _b64(bytes(16)), sk.TO_GATEWAY, peer.id, gw.id)
    assert a != sk.derive_key(SECRET, sid, sk.TO_PEER, peer.id, gw.id)
    assert time.time() > IAT


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        VECTORS.write_text(json.dumps(build_vectors(), indent=2) + "\n")
        print(f"wrote {VECTORS}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --write-vectors")
