"""The provisioning payload (docs/provisioning.md): base38, framing, vectors, every refusal.

tests/vectors/provisioning.json holds the documented vectors: fixed keys, payload texts with
their fields, the claim MAC, and malformed texts with their error codes. The payload encoding
is deterministic, so vectors are checked both ways; an independent encoder written here (plain
loops over the spec's description) checks the reference implementation.

Regenerate (fixed inputs; the file changes only if the format does):
    .venv/bin/python tests/test_provisioning_payload.py --write-vectors
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import ProvisioningError
from gateway.identity import KeyPair, PublicIdentity
from gateway.provisioning import payload as pl
from gateway.provisioning.claim import claim_key, claim_mac, parse_claim_input, verify_mac

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "vectors" / "provisioning.json"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-."


# ------------------------------------------------------------------ fixed inputs
def fixed_key(label: str) -> KeyPair:
    n = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % n
    priv = ec.derive_private_key(scalar, ec.SECP256R1())
    return KeyPair(private=priv, public=PublicIdentity.from_key(priv.public_key()))


OWNER = fixed_key("streembit provisioning vector: owner")
GATEWAY = fixed_key("streembit provisioning vector: gateway")
CODE = bytes(range(1, 11))
JTI = "AAECAwQFBgcICQoLDA0ODw"


# ------------------------------------------------------------------ independent encoder
def ref_base38(data: bytes) -> str:
    out = ""
    for i in range(0, len(data), 3):
        chunk = data[i : i + 3]
        value = sum(b << (8 * j) for j, b in enumerate(chunk))
        for _ in range({1: 2, 2: 4, 3: 5}[len(chunk)]):
            out += ALPHABET[value % 38]
            value //= 38
    return out


def ref_payload(kind: int, fields: list[tuple[int, bytes]], version: int = 1) -> str:
    body = b"".join(bytes([t, len(v)]) + v for t, v in fields)
    head = bytes([version, kind]) + len(body).to_bytes(2, "big") + body
    return "SB:" + ref_base38(head + zlib.crc32(head).to_bytes(4, "big"))


def ref_mac(code: bytes, gw: str, claimer: str, jti: str) -> tuple[bytes, bytes]:
    key = HKDF(hashes.SHA256(), 32, b"streembit-setup-code-v1", gw.encode()).derive(code)
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(f"streembit-claim-v1.{gw}.{claimer}.{jti}".encode())
    return key, h.finalize()


def b64u(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ------------------------------------------------------------------ vectors
def _key_doc(kp: KeyPair) -> dict[str, Any]:
    return {
        "private_scalar_hex": format(kp.private.private_numbers().private_value, "064x"),
        "compressed_hex": kp.public.compressed().hex(),
        "jwk": kp.public.jwk,
        "id": kp.id,
    }


def build_vectors() -> dict[str, Any]:
    owner_plain = pl.OwnerPayload(OWNER.public).encode()
    owner_hint = pl.OwnerPayload(OWNER.public, ("dht.example.net:4242",)).encode()
    gw = pl.GatewayPayload(
        GATEWAY.public, ("ws://192.168.1.20:8081/p2p",), ("192.168.1.20:4242",), CODE
    ).encode()
    gw_owned = pl.GatewayPayload(GATEWAY.public, ("ws://192.168.1.20:8081/p2p",)).encode()
    key, mac = ref_mac(CODE, GATEWAY.id, OWNER.id, JTI)
    good = owner_plain
    i = 3 + 15  # least significant digit of the 4th base38 group (key bytes): stays in range
    flipped = good[:i] + ("1" if good[i] != "1" else "2") + good[i + 1 :]
    v2 = ref_payload(1, [(1, OWNER.public.compressed())], version=2)
    return {
        "keys": {"owner": _key_doc(OWNER), "gateway": _key_doc(GATEWAY)},
        "base38": [
            {"hex": "00", "text": "00"},
            {"hex": "ff", "text": "R6"},
            {"hex": "ffff", "text": "NE71"},
            {"hex": "ffffff", "text": "PLS18"},
            {"hex": "0102030405", "text": ref_base38(bytes.fromhex("0102030405"))},
        ],
        "payloads": [
            {
                "name": "owner key only",
                "text": owner_plain,
                "kind": "owner",
                "public_key_hex": OWNER.public.compressed().hex(),
                "id": OWNER.id,
                "bootstrap": [],
            },
            {
                "name": "owner key with a bootstrap hint",
                "text": owner_hint,
                "kind": "owner",
                "public_key_hex": OWNER.public.compressed().hex(),
                "id": OWNER.id,
                "bootstrap": ["dht.example.net:4242"],
            },
            {
                "name": "unclaimed gateway",
                "text": gw,
                "kind": "gateway",
                "public_key_hex": GATEWAY.public.compressed().hex(),
                "id": GATEWAY.id,
                "addrs": ["ws://192.168.1.20:8081/p2p"],
                "bootstrap": ["192.168.1.20:4242"],
                "setup_code_hex": CODE.hex(),
            },
            {
                "name": "owned gateway (no setup code)",
                "text": gw_owned,
                "kind": "gateway",
                "public_key_hex": GATEWAY.public.compressed().hex(),
                "id": GATEWAY.id,
                "addrs": ["ws://192.168.1.20:8081/p2p"],
                "bootstrap": [],
                "setup_code_hex": None,
            },
        ],
        "claim": {
            "setup_code_hex": CODE.hex(),
            "gateway_id": GATEWAY.id,
            "claimer_id": OWNER.id,
            "jti": JTI,
            "hkdf_key_hex": key.hex(),
            "mac_input": f"streembit-claim-v1.{GATEWAY.id}.{OWNER.id}.{JTI}",
            "mac": b64u(mac),
        },
        "refused": [
            {
                "name": "a web address",
                "text": "https://example.com/x",
                "code": "not_streembit_payload",
            },
            {"name": "wrong checksum", "text": flipped, "code": "payload_checksum"},
            {"name": "truncated", "text": good[:40], "code": "payload_truncated"},
            {"name": "truncated mid-group", "text": good[:-3], "code": "payload_truncated"},
            {"name": "unknown version 2", "text": v2, "code": "payload_version"},
            {
                "name": "unknown kind 9",
                "text": ref_payload(9, [(1, OWNER.public.compressed())]),
                "code": "payload_kind",
            },
            {"name": "lower-case outside base38", "text": "SB:ab_cd", "code": "payload_encoding"},
            {
                "name": "unknown critical field 0x05",
                "text": ref_payload(1, [(1, OWNER.public.compressed()), (5, b"x")]),
                "code": "payload_malformed",
            },
            {
                "name": "no public key",
                "text": ref_payload(1, [(3, b"h:1")]),
                "code": "payload_malformed",
            },
            {
                "name": "key not on the curve",
                "text": ref_payload(1, [(1, b"\x02" + b"\xff" * 32)]),
                "code": "payload_malformed",
            },
        ],
    }


def write_vectors() -> None:
    vec = build_vectors()
    VECTORS.write_text(json.dumps(vec, indent=1) + "\n")


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return dict(json.loads(VECTORS.read_text()))


# ------------------------------------------------------------------ tests
def test_stored_vectors_are_current(vectors: dict[str, Any]) -> None:
    assert vectors == json.loads(json.dumps(build_vectors()))


def test_base38_vectors_both_ways(vectors: dict[str, Any]) -> None:
    for v in vectors["base38"]:
        data = bytes.fromhex(v["hex"])
        assert pl.base38_encode(data) == v["text"] == ref_base38(data)
        assert pl.base38_decode(v["text"]) == data


def test_payload_vectors_decode_and_encode(vectors: dict[str, Any]) -> None:
    for v in vectors["payloads"]:
        p = pl.decode(v["text"])
        if v["kind"] == "owner":
            assert isinstance(p, pl.OwnerPayload)
            assert p.owner.compressed().hex() == v["public_key_hex"] and p.owner.id == v["id"]
            assert list(p.bootstrap) == v["bootstrap"]
            fields = [(1, p.owner.compressed())] + [(3, h.encode()) for h in v["bootstrap"]]
            assert ref_payload(1, fields) == v["text"] == p.encode()
        else:
            assert isinstance(p, pl.GatewayPayload)
            assert p.gateway.id == v["id"] and list(p.addrs) == v["addrs"]
            assert list(p.bootstrap) == v["bootstrap"]
            code = v["setup_code_hex"]
            assert (p.setup_code.hex() if p.setup_code else None) == code
            fields = [(1, p.gateway.compressed())] + [(2, a.encode()) for a in v["addrs"]]
            fields += [(3, h.encode()) for h in v["bootstrap"]]
            if code:
                fields.append((4, bytes.fromhex(code)))
            assert ref_payload(2, fields) == v["text"] == p.encode()
        assert set(v["text"]) <= set(ALPHABET + ":S")  # QR alphanumeric mode only


def test_refused_vectors(vectors: dict[str, Any]) -> None:
    for v in vectors["refused"]:
        with pytest.raises(ProvisioningError) as info:
            pl.decode(v["text"])
        assert info.value.code == v["code"], v["name"]
        assert str(info.value), v["name"]


def test_claim_vector(vectors: dict[str, Any]) -> None:
    c = vectors["claim"]
    code = bytes.fromhex(c["setup_code_hex"])
    assert claim_key(code, c["gateway_id"]).hex() == c["hkdf_key_hex"]
    assert claim_mac(code, c["gateway_id"], c["claimer_id"], c["jti"]) == c["mac"]
    raw = parse_claim_input({"v": 1, "mac": c["mac"]})
    assert verify_mac(code, c["gateway_id"], c["claimer_id"], c["jti"], raw)
    assert not verify_mac(code, c["gateway_id"], c["claimer_id"], "x" * 22, raw)
    assert not verify_mac(bytes(10), c["gateway_id"], c["claimer_id"], c["jti"], raw)


def test_documented_vectors_match(vectors: dict[str, Any]) -> None:
    doc = (HERE.parent / "docs" / "provisioning.md").read_text()
    texts = [v["text"] for v in vectors["payloads"] + vectors["refused"]]
    texts += [vectors["claim"][k] for k in ("mac", "hkdf_key_hex", "mac_input")]
    texts += [k["id"] for k in vectors["keys"].values()]
    texts += [k["private_scalar_hex"] for k in vectors["keys"].values()]
    missing = [t for t in texts if t not in doc]
    assert not missing, f"docs/provisioning.md lacks {missing}"


def test_round_trips_and_case_and_whitespace() -> None:
    p = pl.OwnerPayload(OWNER.public, ("127.0.0.1:4242", "[::1]:4242"))
    text = p.encode()
    assert pl.decode_owner(f"  {text}\n") == p
    assert pl.decode_owner(text.lower()).owner.id == OWNER.id  # typed in lower case
    g = pl.GatewayPayload(GATEWAY.public, ("wss://gw.example:443/p2p",), (), CODE)
    assert pl.decode_gateway(g.encode()) == g
    assert "setup_code=<set>" in repr(g) and CODE.hex() not in repr(g)


def test_wrong_kind_is_refused_with_a_hint() -> None:
    owner_text = pl.OwnerPayload(OWNER.public).encode()
    gw_text = pl.GatewayPayload(GATEWAY.public, (), (), CODE).encode()
    with pytest.raises(ProvisioningError, match="gateway's setup QR") as info:
        pl.decode_owner(gw_text)
    assert info.value.code == "payload_kind"
    with pytest.raises(ProvisioningError) as info:
        pl.decode_gateway(owner_text)
    assert info.value.code == "payload_kind"


def test_optional_fields_are_skipped_critical_ones_refused() -> None:
    key = OWNER.public.compressed()
    text = ref_payload(1, [(1, key), (0x80, b"future"), (0xFE, b"")])
    assert pl.decode_owner(text).owner.id == OWNER.id
    for fields, why in (
        ([(1, key), (1, key)], "appears 2 times"),
        ([(1, key[:20])], "compressed"),
        ([(1, key), (3, b"bad host")], "printable"),
        ([(1, key), (3, b"\xff\xfe")], "UTF-8"),
        ([(1, key), (2, b"ws://x/p2p")], "owner payload"),
    ):
        with pytest.raises(ProvisioningError, match=why) as info:
            pl.decode(ref_payload(1, fields))
        assert info.value.code == "payload_malformed"
    with pytest.raises(ProvisioningError, match="ws://"):
        pl.decode(ref_payload(2, [(1, GATEWAY.public.compressed()), (2, b"http://x/")]))
    with pytest.raises(ProvisioningError, match="10 bytes"):
        pl.decode(ref_payload(2, [(1, GATEWAY.public.compressed()), (4, b"short")]))


def test_framing_refusals() -> None:
    good = pl.OwnerPayload(OWNER.public).encode()
    body = pl.base38_decode(good[3:])
    cases = {
        "SB:": "payload_truncated",
        "SB:" + pl.base38_encode(bytes([1, 1])): "payload_truncated",  # header cut off
        "SB:" + pl.base38_encode(body + b"\x00"): "payload_malformed",  # stray byte
        "SB:" + "Z" * 5: "payload_encoding",  # a group above 2**24
        "SB:" + "0" * 2000: "payload_too_large",
        "": "not_streembit_payload",
        "MT:Y.K9042C00KA0648G00": "not_streembit_payload",  # a Matter code
    }
    for text, code in cases.items():
        with pytest.raises(ProvisioningError) as info:
            pl.decode(text)
        assert info.value.code == code, text[:20]
    with pytest.raises(ProvisioningError) as info:
        pl.decode(123)  # type: ignore[arg-type]
    assert info.value.code == "not_streembit_payload"


def test_claim_input_shapes_are_checked() -> None:
    good = claim_mac(CODE, GATEWAY.id, OWNER.id, JTI)
    for bad in (
        None,
        "x",
        {"mac": good},
        {"v": 2, "mac": good},
        {"v": 1, "mac": 5},
        {"v": 1, "mac": "!!"},
        {"v": 1, "mac": good[:20]},
        {"v": 1, "mac": "A" * 65},
    ):
        with pytest.raises(ProvisioningError) as info:
            parse_claim_input(bad)
        assert info.value.code == "claim_malformed"


def test_encoding_limits() -> None:
    with pytest.raises(ProvisioningError) as info:
        pl.OwnerPayload(OWNER.public, ("h" * 300 + ":1",)).encode()
    assert info.value.code == "payload_too_large"
    assert struct.calcsize(">BBH") == pl.HEADER_BYTES


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-vectors"]:
        write_vectors()
        print(f"wrote {VECTORS}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --write-vectors")
