"""The web app's core library (gateway/webapp/src/lib/) against the Python implementation: real
Node (WebCrypto + jose) on one side, the gateway's own code and joserfc on the other.

The library runs in Node through gateway/webapp/test/driver.mjs (one process per module, a JSON
line protocol), with in-memory key stores in place of IndexedDB. Nothing is skipped: without
Node >= 18 or the npm packages the tests fail with what to install. Network: 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import filecmp
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe
from joserfc.jwk import OctKey

from gateway.acl import AclStore, Grant, new_acl, sign_acl, verify_acl, with_grant
from gateway.auth import TokenVerifier, issue_token
from gateway.errors import AclError, AuthError, MessageError
from gateway.identity import generate_keypair, public_from_jwk, thumbprint, write_keypair
from gateway.messages import ReplayCache, open_sealed, seal
from tests.helpers import PEER, REPO, Running, run_cli
from tests.webapp_node import Driver, node

WEBAPP = REPO / "gateway" / "webapp"
DRIVER = WEBAPP / "test" / "driver.mjs"
VECTORS = REPO / "tests" / "vectors"
PASS = "correct horse battery staple"
NOW = 1767225600  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def js() -> Iterator[Driver]:
    d = Driver(DRIVER, "jose", "esbuild", "uqr")
    yield d
    d.close()


# ------------------------------------------------------------------------------- helpers
def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def flip(token: str, segment: int) -> str:
    """TOKEN with one character in the middle of SEGMENT changed."""
    parts = token.split(".")
    s = parts[segment]
    i = len(s) // 2
    parts[segment] = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1 :]
    return ".".join(parts)


def pem_of_jwk(jwk: dict[str, str]) -> str:
    d = int.from_bytes(unb64(jwk["d"]), "big")
    key = ec.derive_private_key(d, ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_of(kp: Any) -> str:
    return str(kp.private_pem().decode())


class BackupRegistry(jwe.JWERegistry):
    """joserfc caps p2c at 300 000 (a guard against slow headers); app backups use 600 000."""

    def check_header(self, header: dict[str, Any], check_more: bool = False) -> None:
        p2c = header.get("p2c")
        if isinstance(p2c, int) and 300_000 < p2c <= 5_000_000:
            header = {**header, "p2c": 300_000}  # the real count is still used to derive the key
        super().check_header(header, check_more)


def read_backup(text: str, passphrase: str) -> dict[str, Any]:
    """A web-app key backup read with joserfc: the private JWK (docs/webapp-lib.md §2)."""
    reg = BackupRegistry(algorithms=["PBES2-HS512+A256KW", "A256GCM"])
    obj = jwe.decrypt_compact(text, OctKey.import_key(passphrase.encode()), registry=reg)
    assert obj.protected["cty"] == "jwk+json" and obj.protected["p2c"] >= 600_000
    assert obj.plaintext is not None
    jwk: dict[str, Any] = json.loads(obj.plaintext)
    return jwk


# ---------------------------------------------------------------------------- 1. key ids
def test_key_made_in_node_has_the_python_id(js: Driver) -> None:
    key = js.ok("createKey", store="k1")
    jwk = key["publicJwk"]
    assert set(jwk) == {"kty", "crv", "x", "y"}
    assert thumbprint(jwk) == key["id"] == public_from_jwk(jwk).id
    assert key["hasBackup"] is False
    info = js.ok("storeInfo", store="k1")
    # only non-extractable CryptoKeys are kept: no readable private key anywhere
    assert info["signKey"] == {
        "type": "private",
        "extractable": False,
        "usages": ["sign"],
        "alg": "ECDSA",
    }
    assert info["ecdhKey"] == {
        "type": "private",
        "extractable": False,
        "usages": ["deriveBits"],
        "alg": "ECDH",
    }
    assert info["hasD"] is False and info["backup"] is None
    assert js.code("createKey", store="k1") == "key_exists"  # never silently replaced
    for vec in ("tokens.json", "messages.json", "acl.json"):
        data = json.loads((VECTORS / vec).read_text())
        for name, jwk in data["keys"].items():
            assert js.ok("keyId", jwk=jwk)["id"] == thumbprint(jwk), (vec, name)


# ------------------------------------------------------------------------------ 2. tokens
def test_token_from_js_accepted_and_tampered_refused(js: Driver) -> None:
    key = js.ok("createKey", store="t1")
    gw = generate_keypair()
    pub = public_from_jwk(key["publicJwk"])
    verifier = TokenVerifier(gw.id, lambda iss: pub if iss == pub.id else None)
    token = js.ok("token", store="t1", gatewayId=gw.id, ttl=120)["token"]
    principal = verifier.verify(token)
    assert principal.id == key["id"]
    header, claims = (json.loads(unb64(s)) for s in token.split(".")[:2])
    assert header == {"alg": "ES256", "typ": "JWT", "kid": key["id"]}
    py_claims = json.loads(unb64(issue_token(generate_keypair(), audience=gw.id).split(".")[1]))
    assert set(claims) == set(py_claims) == {"iss", "sub", "aud", "iat", "nbf", "exp", "jti"}
    assert claims["iss"] == claims["sub"] == key["id"] and claims["aud"] == gw.id
    assert claims["exp"] - claims["iat"] == 120 and claims["nbf"] == claims["iat"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", claims["jti"])

    def refused(tok: str) -> str:
        fresh = TokenVerifier(gw.id, lambda iss: pub if iss == pub.id else None)
        with pytest.raises(AuthError) as exc:
            fresh.verify(tok)
        return str(exc.value.code)

    parts = token.split(".")
    longer = b64(json.dumps({**claims, "exp": claims["exp"] + 3600}).encode())
    assert refused(f"{parts[0]}.{longer}.{parts[2]}") == "bad_signature"
    assert refused(flip(token, 2)) == "bad_signature"
    other = js.ok("token", store="t1", gatewayId=generate_keypair().id)["token"]
    assert refused(other) == "wrong_audience"
    old = js.ok("token", store="t1", gatewayId=gw.id, ttl=60, now=time.time() - 600)["token"]
    assert refused(old) == "expired"
    assert js.code("token", store="t1", gatewayId=gw.id, ttl=86_401) == "bad_request"


# --------------------------------------------------------------------------------- 3. ACL
def test_acl_signed_in_js_installs_and_rollback_refused(js: Driver, tmp_path: Path) -> None:
    gw, owner, alice, bob = (generate_keypair() for _ in range(4))
    store = AclStore(tmp_path, gw.id)
    store.pin_owner(owner.public)
    assert js.ok("importPem", store="owner", pem=pem_of(owner))["id"] == owner.id

    steps = [
        {
            "preset": "can unlock",
            "jwk": alice.public.jwk,
            "things": ["front-door"],
            "schedule": "fri 22:00-24:00; sat 00:00-06:00",
            "exp": NOW + 86_400,
        }
    ]
    first = js.ok("aclEdit", store="owner", gatewayId=gw.id, steps=steps, now=NOW)
    header = json.loads(unb64(first["jws"].split(".")[0]))
    assert header == {"alg": "ES256", "typ": "streembit-acl+jws", "kid": owner.id}
    acl = store.install(first["jws"])
    assert acl.version == 1 and acl.iat == NOW
    grant = acl.grant_for(alice.id)
    assert grant is not None and grant.things == ("front-door",) and grant.exp == NOW + 86_400
    assert grant.ops == {"invokeaction", "observeproperty", "readproperty", "subscribeevent"}
    # byte for byte what the Python signer writes for the same ACL
    py = with_grant(new_acl(gw.id, now=NOW), grant, now=NOW)
    assert first["text"] == json.dumps(py.to_json(), separators=(",", ":"), sort_keys=True)
    assert unb64(first["jws"].split(".")[1]).decode() == first["text"]

    # the next edit starts from GET /acl's answer, checked against the owner's signature
    answer = {"version": 1, "acl": acl.to_json(), "jws": first["jws"]}
    steps2 = [
        {"jwk": bob.public.jwk, "things": ["*"], "ops": ["readproperty"]},
        {"revoke": alice.id},
    ]
    second = js.ok(
        "aclEdit", store="owner", gatewayId=gw.id, answer=answer, steps=steps2, now=NOW + 5
    )
    acl2 = store.install(second["jws"])
    assert acl2.version == 3 and acl2.grant_for(alice.id) is None and alice.id in acl2.revoked
    assert acl2.grant_for(bob.id) is not None

    again = js.ok("aclEdit", store="owner", gatewayId=gw.id, answer=answer, steps=[], version=3)
    with pytest.raises(AclError) as exc:
        store.install(again["jws"])
    assert exc.value.code == "acl_rollback"
    assert store.installed_version == 3

    # an answer whose JWS is not the owner's is refused, not edited and re-signed
    forged = sign_acl(with_grant(new_acl(gw.id), Grant.for_key(bob.public, things=["*"])), bob)
    bad = {"version": 1, "acl": None, "jws": forged}
    assert (
        js.code("aclEdit", store="owner", gatewayId=gw.id, answer=bad, steps=[])
        == "acl_bad_signature"
    )
    assert (
        js.code("aclEdit", store="owner", gatewayId=gw.id, answer={**answer, "jws": None}, steps=[])
        == "acl_unverifiable"
    )
    # the library refuses what the gateway would refuse
    overnight = [
        {
            "jwk": bob.public.jwk,
            "things": ["x"],
            "ops": ["readproperty"],
            "schedule": "fri 22:00-06:00",
        }
    ]
    assert js.code("aclEdit", store="owner", gatewayId=gw.id, steps=overnight) == "acl_malformed"
    assert (
        js.code(
            "aclEdit",
            store="owner",
            gatewayId=gw.id,
            steps=[{"jwk": bob.public.jwk, "things": ["x"], "ops": ["fly"]}],
        )
        == "acl_malformed"
    )


def test_acl_vectors_verify_in_js(js: Driver) -> None:
    data = json.loads((VECTORS / "acl.json").read_text())
    owner = {k: v for k, v in data["keys"]["owner"].items() if k != "d"}
    gw = data["ids"]["gateway"]
    payload = js.ok("aclVerify", jws=data["acl"]["jws"], ownerJwk=owner, gatewayId=gw)
    assert payload == data["acl"]["expect_payload"]
    verify_acl(
        data["acl"]["jws"], owner=public_from_jwk(owner), gateway_id=gw, installed_version=None
    )
    refusals = {r["name"]: r for r in data["refusals"]}
    expect = {
        "tampered_payload": "acl_bad_signature",
        "foreign_signer": "acl_bad_signature",
        "alg_none": "acl_bad_alg",
        "hs256_public_key": "acl_bad_alg",
        "wrong_typ": "acl_malformed",
        "wrong_gateway": "acl_wrong_gateway",
        "unknown_member": "acl_malformed",
        "overnight_range": "acl_malformed",
        "not_a_jws": "acl_unsigned",
    }
    for name, code in expect.items():
        got = js.code("aclVerify", jws=refusals[name]["jws"], ownerJwk=owner, gatewayId=gw)
        assert got == code, name
    for spec in (
        "mon-fri 08:00-18:00; sat 09:00-12:00",
        "daily 07:00-23:00",
        "fri-mon 10:00-12:00,14:00-16:00",
        "mon,wed 17:00-19:00",
        "fri 22:00-24:00; sat 00:00-06:00;",
    ):
        js.ok("checkSchedule", spec=spec)
    for spec in (
        "fri 22:00-06:00",
        "mon 8:00-9:00",
        "mon 24:30-24:40",
        "",
        "funday 01:00-02:00",
        "mon",
    ):
        assert js.code("checkSchedule", spec=spec) == "acl_malformed", spec


# ------------------------------------------------------------------------ 4. sealed messages
BODY = {"op": "writeproperty", "thing": "hall-thermostat", "name": "setpoint", "input": 21.5}


def test_sealed_js_to_python(js: Driver) -> None:
    sender = js.ok("createKey", store="s1")
    r = generate_keypair()
    token = js.ok(
        "seal",
        store="s1",
        body=BODY,
        recipientJwk=r.public.jwk,
        typ="request",
        jti="0xFX_s3xMBEWcvEDrzHc6g",
        now=NOW,
    )["token"]
    outer = json.loads(unb64(token.split(".")[0]))
    assert set(outer) == {"alg", "enc", "cty", "kid", "epk"} and outer["kid"] == r.id
    assert (
        outer["alg"] == "ECDH-ES"
        and outer["enc"] == "A256GCM"
        and outer["cty"] == "streembit-msg+jws"
    )
    replay = ReplayCache()
    opened = open_sealed(token, recipient=r, replay=replay, now=NOW + 1)
    assert opened.sender.id == sender["id"]
    assert opened.claims == {
        "iss": sender["id"],
        "aud": r.id,
        "iat": NOW,
        "exp": NOW + 30,
        "jti": "0xFX_s3xMBEWcvEDrzHc6g",
        "typ": "request",
        **BODY,
    }
    for bad, code in (
        (flip(token, 3), "decrypt_failed"),
        (flip(token, 4), "decrypt_failed"),
        (token, "replayed"),
    ):
        with pytest.raises(MessageError) as exc:
            open_sealed(bad, recipient=r, replay=replay, now=NOW + 1)
        assert exc.value.code == code
    with pytest.raises(MessageError) as exc:
        open_sealed(token, recipient=generate_keypair(), replay=None, now=NOW + 1)
    assert exc.value.code == "wrong_audience"
    # the library refuses to emit what a peer would refuse
    assert (
        js.code("seal", store="s1", body={"op": "fly"}, recipientJwk=r.public.jwk, typ="request")
        == "bad_format"
    )
    assert (
        js.code("seal", store="s1", body={"op": "td"}, recipientJwk=r.public.jwk, typ="request")
        == "missing_claim"
    )
    assert (
        js.code("seal", store="s1", body=BODY, recipientJwk=r.public.jwk, typ="request", ttl=301)
        == "too_long_lived"
    )
    assert (
        js.code("seal", store="s1", body=BODY, recipientJwk=r.public.jwk, typ="command")
        == "bad_type"
    )


def test_sealed_python_to_js(js: Driver) -> None:
    me = js.ok("createKey", store="r1")
    py_sender = generate_keypair()
    recipient = public_from_jwk(me["publicJwk"])
    body = {
        "thing": "front-door",
        "name": "state",
        "seq": 3,
        "data": "unlocked",
        "re": "0xFX_s3xMBEWcvEDrzHc6g",
    }
    token = seal(body, sender=py_sender, recipient=recipient, typ="event", now=NOW)
    opened = js.ok("open", store="r1", token=token, now=NOW + 1, replay=True)
    assert opened["sender"]["id"] == py_sender.id
    assert opened["claims"]["typ"] == "event" and opened["claims"]["data"] == "unlocked"
    assert js.code("open", store="r1", token=token, now=NOW + 1, replay=True) == "replayed"
    assert js.code("open", store="r1", token=flip(token, 3), now=NOW + 1) == "decrypt_failed"
    assert js.code("open", store="r1", token=token, now=NOW + 40) == "expired"
    other = seal(body, sender=py_sender, recipient=generate_keypair().public, typ="event", now=NOW)
    assert js.code("open", store="r1", token=other, now=NOW + 1) == "wrong_audience"


def test_sealed_doc_vectors_open_alike_in_js(js: Driver) -> None:
    """Every vector of docs/protocol.md §6, opened by the library: same claims, same codes."""
    data = json.loads((VECTORS / "messages.json").read_text())
    rid = js.ok("importPem", store="vecR", pem=pem_of_jwk(data["keys"]["recipient"]))["id"]
    assert rid == data["ids"]["recipient"]
    assert len(data["vectors"]) >= 20
    for v in data["vectors"]:
        out = js.call("open", store="vecR", token=v["token"], now=v["now"])
        if "expect_claims" in v:
            assert out.get("ok", {}).get("claims") == v["expect_claims"], v["name"]
        else:
            assert out.get("error", {}).get("code") == v["expect_error"], (v["name"], out)


# ------------------------------------------------------------------------- 5. keys: backup, PEM
def test_backup_round_trip_and_wrong_passphrase(js: Driver) -> None:
    key = js.ok("createKey", store="b1", passphrase=PASS)
    assert key["hasBackup"] is True
    info = js.ok("storeInfo", store="b1")
    assert info["signKey"]["extractable"] is False and info["hasD"] is False
    text = js.ok("exportBackup", store="b1", passphrase=PASS)["text"]
    assert text == info["backup"]  # stored encrypted only; exporting reveals nothing new
    header = json.loads(unb64(text.split(".")[0]))
    assert header["alg"] == "PBES2-HS512+A256KW" and header["enc"] == "A256GCM"
    assert header["cty"] == "jwk+json" and header["kid"] == key["id"] and header["p2c"] >= 600_000
    assert js.code("exportBackup", store="b1", passphrase="wrong passphrase") == "bad_passphrase"

    jwk = read_backup(text, PASS)  # Python (joserfc) reads it
    assert thumbprint(jwk) == key["id"] and set(jwk) == {"kty", "crv", "x", "y", "d"}

    assert (
        js.code("importBackup", store="b2", text=text, passphrase="wrong passphrase")
        == "bad_passphrase"
    )
    assert js.code("importBackup", store="b2", text="not a backup", passphrase=PASS) == "bad_backup"
    again = js.ok("importBackup", store="b2", text=text, passphrase=PASS)
    assert again["id"] == key["id"] and again["hasBackup"] is True
    # the restored key works: a token of it verifies in Python
    gw = generate_keypair()
    pub = public_from_jwk(again["publicJwk"])
    token = js.ok("token", store="b2", gatewayId=gw.id)["token"]
    assert TokenVerifier(gw.id, lambda iss: pub).verify(token).id == key["id"]

    js.ok("createKey", store="b3")  # no passphrase: the key can never leave the device
    assert js.code("exportBackup", store="b3", passphrase=PASS) == "no_backup"
    assert js.code("createKey", store="b4", passphrase="short") == "weak_passphrase"


def test_streembit_peer_pem_imports_with_the_same_id(js: Driver, tmp_path: Path) -> None:
    path = tmp_path / "me"
    run_cli(PEER, "keygen", "--key", path, ok=True)
    cli_id = json.loads(run_cli(PEER, "id", "--json", "--key", path, ok=True).stdout)["id"]
    key = js.ok("importPem", store="p1", pem=path.read_text(), passphrase=PASS)
    assert key["id"] == cli_id and key["hasBackup"] is True
    assert (
        thumbprint(read_backup(js.ok("exportBackup", store="p1", passphrase=PASS)["text"], PASS))
        == cli_id
    )
    assert js.code("importPem", store="p2", pem=(tmp_path / "me.pub").read_text()) == "bad_key"
    kp = generate_keypair()
    write_keypair(tmp_path / "enc", kp, passphrase=b"secret-pass")
    assert js.code("importPem", store="p2", pem=(tmp_path / "enc").read_text()) == "bad_key"


# ------------------------------------------------------------------ the HTTP binding, end to end
async def test_gateway_http_with_js_tokens(js: Driver, running: Running) -> None:
    """GatewayHttp against a running gateway on 127.0.0.1: token auth, reads, SSE, PUT /acl."""
    w = running.world

    async def call(cmd: str, **a: Any) -> Any:  # in a thread: the driver blocks, the gateway runs
        return await asyncio.to_thread(js.ok, cmd, **a)

    async def code(cmd: str, **a: Any) -> str:
        return await asyncio.to_thread(js.code, cmd, **a)

    await call("importPem", store="gw-user", pem=pem_of(w.user), replace=True)
    await call("importPem", store="gw-owner", pem=pem_of(w.owner), replace=True)
    user = {"base": running.url, "store": "gw-user", "gatewayId": w.gw_key.id}
    owner = {**user, "store": "gw-owner"}
    tds = (await call("http", **user, method="things"))["value"]
    assert {td["title"] for td in tds} == {"Front door", "Living room"}
    assert (await call("http", **user, method="td", args=["front-door"]))["value"][
        "title"
    ] == "Front door"
    assert await call("http", **user, method="invoke", args=["front-door", "unlock"]) == {
        "value": "unlocked"
    }
    assert await call("http", **user, method="read", args=["front-door", "state"]) == {
        "value": "unlocked"
    }
    assert await call(
        "http", **user, method="write", args=["living-room", "targetTemperature", 21.5]
    ) == {"value": None}
    assert (
        await code("http", **user, method="read", args=["front-door", "nope"])
        == "unknown_affordance"
    )
    assert await code("http", **user, method="putAcl", args=["x.y.z"]) == "forbidden"
    assert (
        await code("http", **{**user, "store": "gw-owner", "gatewayId": "wrong"}, method="status")
        == "unauthenticated"
    )
    assert isinstance((await call("http", **user, method="status"))["value"], dict)

    # SSE through fetch() streaming with the bearer token; a write shows up in the stream
    await call("observe", **user, name="s1", thing="living-room", prop="targetTemperature")
    await asyncio.sleep(0.5)
    await call("http", **user, method="write", args=["living-room", "targetTemperature", 22.5])
    for _ in range(50):
        state = await call("streamState", name="s1")
        if any(v["v"] == 22.5 for v in state["values"]):
            break
        await asyncio.sleep(0.1)
    state = await call("streamState", name="s1", stop=True)
    assert state["errors"] == [] and state["values"][-1]["v"] == 22.5, state
    assert state["values"][-1]["name"] == "targetTemperature"
    await call("http", **user, method="write", args=["living-room", "targetTemperature", 23.5])
    await asyncio.sleep(0.5)
    assert (await call("streamState", name="s1"))["values"] == state["values"]  # stopped

    # owner: an ACL edited from GET /acl and signed in JS, installed with PUT /acl
    answer = (await call("http", **owner, method="getAcl"))["value"]
    edit = await call(
        "aclEdit",
        store="gw-owner",
        gatewayId=w.gw_key.id,
        answer=answer,
        steps=[{"preset": "read only", "jwk": w.stranger.public.jwk, "things": ["front-door"]}],
    )
    put = (await call("http", **owner, method="putAcl", args=[edit["jws"]]))["value"]
    assert put == {"version": answer["version"] + 1, "grants": 2}
    assert (
        await code("http", **owner, method="putAcl", args=[edit["jws"]]) == "bad_request"
    )  # rollback
    stranger = {**user, "store": "gw-stranger"}
    await call("importPem", store="gw-stranger", pem=pem_of(w.stranger), replace=True)
    assert await call("http", **stranger, method="read", args=["front-door", "state"]) == {
        "value": "unlocked"
    }
    assert (
        await code("http", **stranger, method="invoke", args=["front-door", "lock"]) == "forbidden"
    )
    audit = (
        await call("http", **owner, method="audit", args=[{"limit": 5, "subject": w.stranger.id}])
    )["value"]
    assert 1 <= len(audit["records"]) <= 5
    assert await code("http", **user, method="audit", args=[{}]) == "forbidden"

    # revoking the stranger ends its open stream: a final error, no retry
    await call("observe", **stranger, name="s2", thing="front-door", prop="state")
    await asyncio.sleep(0.5)
    answer = (await call("http", **owner, method="getAcl"))["value"]
    edit = await call(
        "aclEdit", store="gw-owner", gatewayId=w.gw_key.id, answer=answer,
        steps=[{"revoke": w.stranger.id}],
    )  # fmt: skip
    await call("http", **owner, method="putAcl", args=[edit["jws"]])
    for _ in range(50):
        state = await call("streamState", name="s2")
        if state["errors"]:
            break
        await asyncio.sleep(0.1)
    await call("streamState", name="s2", stop=True)
    assert state["errors"] == [
        {"code": "forbidden", "reason": "access revoked", "status": 403, "retrying": False}
    ], state


# ---------------------------------------------------------------------------------- 6. build
def test_build_is_reproducible_and_committed_dist_is_current(tmp_path: Path) -> None:
    exe = node("jose", "esbuild", "uqr")
    outs = []
    for n in (1, 2):
        out = tmp_path / f"dist{n}"
        proc = subprocess.run(
            [exe, "build.mjs", "--outdir", str(out)],
            cwd=WEBAPP,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    names = sorted(p.name for p in outs[0].iterdir())
    assert "app.js" in names and names == sorted(p.name for p in outs[1].iterdir())
    assert filecmp.cmpfiles(outs[0], outs[1], names, shallow=False)[0] == names  # same bytes

    from gateway.bindings.http.webapp import FILES

    assert set(names) <= set(FILES)  # every built file is one the gateway serves
    bundle = (outs[0] / "app.js").read_text()
    assert not re.search(r"""(?:\bimport\s*\(?\s*|\bfrom\s*)["'](?:https?:)?//""", bundle)  # no CDN
    assert "sourceMappingURL" not in bundle

    dist = WEBAPP / "dist"
    stale = (
        "gateway/webapp/dist is not the build of the sources: run `npm run build` in gateway/webapp"
    )
    assert dist.is_dir(), stale
    assert sorted(p.name for p in dist.iterdir()) == names, stale
    for name in names:
        assert (dist / name).read_bytes() == (outs[0] / name).read_bytes(), f"{name}: {stale}"
