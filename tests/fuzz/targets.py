"""The parsers under fuzz, each with valid samples made by the project's own code.

A `Target` turns one fuzz input (bytes) into what the parser reads (`build`: it may sign,
encrypt, MAC or frame the bytes so that mutated content gets past the outer checks, exactly as
a peer holding its own key could) and runs the parser (`parse`). Only `parse` is judged: it may
raise the project's errors, nothing else. Keys are derived from fixed numbers, so the samples
(and with the engine's seed, every input) are the same on every run.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwe, jws
from joserfc.jwk import OctKey

from device_drivers.companion.hub import CompanionHub, Timing
from device_drivers.errors import StreembitError
from gateway import jsonsafe
from gateway.acl import Acl, Grant, new_acl, read_acl_unverified, sign_acl, verify_acl, with_grant
from gateway.acl.delegation import sign_link, split_header
from gateway.acl.dlg_verify import verify_chain
from gateway.acl.model import MAX_ACL_BYTES
from gateway.auth.tokens import TokenVerifier, issue_token
from gateway.bindings.http.server import HttpBinding
from gateway.bindings.p2p.keyring import Keyring
from gateway.cli.peer_net import json_arg
from gateway.config import default_config, load_config
from gateway.errors import RequestError
from gateway.identity import KeyPair, PublicIdentity, load_public
from gateway.messages.codec import json_bytes, json_object
from gateway.messages.keys import private_key, public_key
from gateway.messages.seal import JWE_CTY, JWS_TYP, Opened, open_sealed, seal
from gateway.messages.sessionkeys import TO_GATEWAY, SessionKeys, derive_key, parse_announcement
from gateway.p2p import make_contact_record, verify_record
from gateway.p2p.reachwire import (
    parse_dialback_args,
    parse_dialback_reply,
    parse_info_reply,
    parse_nonce_datagram,
)
from gateway.p2p.rpc import pack as msgpack
from gateway.provisioning import payload as qr
from gateway.reach.observe import parse_observe_response
from gateway.reach.portmap.natpmp import parse_reply as natpmp_reply
from gateway.reach.portmap.pcp import parse_reply as pcp_reply
from gateway.reach.punch import parse_message as parse_punch_message
from gateway.things.registry import build_things
from gateway.wot import build_directory_td, build_td
from gateway.wot.validate import validate_td_text
from micropython_client import frames

REPO = Path(__file__).resolve().parents[2]
NOW = 1_760_000_000  # the fixed "now" of every time check
COMPANION_KEY = bytes(range(32))


class Skip(Exception):  # (not an error: the input could not be built)
    """`build` could not make a parser input from these bytes (not counted)."""


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    build: Callable[[bytes], Any]
    parse: Callable[[Any], object]
    allowed: tuple[type[BaseException], ...] = (StreembitError,)


def _request_claims(iss: str, aud: str, bodies: list[dict[str, Any]]) -> list[bytes]:
    """The claims JSON of a request with each of BODIES, issued at NOW (seeds)."""
    envelope = {"iss": iss, "aud": aud, "iat": NOW, "exp": NOW + 30, "typ": "request"}
    return [json_bytes({**envelope, "jti": "A" * 22, **b}) for b in bodies]


def keypair(n: int) -> KeyPair:
    """A P-256 key pair from a fixed number (fuzz samples only)."""
    priv = ec.derive_private_key(0x5EED0000 + n, ec.SECP256R1())
    return KeyPair(private=priv, public=PublicIdentity.from_key(priv.public_key()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# -- HTTP body -------------------------------------------------------------------------------
def _http_body() -> Target:
    binding = SimpleNamespace(max_body=64 * 1024)

    class _Req:
        def __init__(self, raw: bytes) -> None:
            self.raw = raw

        async def read(self) -> bytes:
            return self.raw

    def parse(raw: bytes) -> object:
        coro = HttpBinding._body(binding, _Req(raw))  # type: ignore[arg-type]
        try:
            coro.send(None)
        except StopIteration as stop:
            ok, value = stop.value
        else:
            coro.close()
            raise AssertionError("the body parser suspended on an in-memory body")
        if not ok:
            raise RequestError(value.reason, code=value.code)  # the refusal, as the audit has it
        # what is accepted must be storable: the audit log and the replies encode it
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return value

    seeds = [b'{"value": 21.5}', b"22.5", b'"heat"', b"true", b'{"a":[1,2,{"b":null}]}', b"[]"]
    return Target("http/body", seeds, lambda d: d, parse)


# -- bearer tokens ---------------------------------------------------------------------------
def _tokens() -> list[Target]:
    gw, user = keypair(11), keypair(12)
    verifier = TokenVerifier(
        gw.id, lambda i: user.public if i == user.id else None, clock=lambda: NOW
    )
    tokens = [issue_token(user, audience=gw.id, ttl=t, now=NOW).encode() for t in (60, 3600)]
    header, claims, _ = tokens[0].decode().split(".")

    def verify(token: str) -> object:
        verifier.invalidate()  # no cache: every input is verified
        return verifier.verify(token)

    def signed(data: bytes) -> str:  # claims as any key holder could sign them
        if len(data) > 3 * 1024:
            raise Skip
        return jws.serialize_compact(
            _unb64_json(header), data, user.jose_key(), algorithms=["ES256"]
        )

    return [
        Target("auth/token", tokens, _text, verify),
        Target("auth/signed-claims", [_unb64(claims)], signed, verify),
    ]


def _unb64_json(seg: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(_unb64(seg))
    return value


# -- sealed messages -------------------------------------------------------------------------
def _sealed() -> list[Target]:
    gw, peer = keypair(1), keypair(2)
    bodies: list[dict[str, Any]] = [
        {"op": "readproperty", "thing": "living-room", "name": "temperature"},
        {"op": "writeproperty", "thing": "living-room", "name": "targetTemperature", "input": 21},
        {"op": "invokeaction", "thing": "front-door", "name": "lock", "input": {"a": [1, "x"]}},
        {"op": "aclpush", "input": "a.b.c"},
        {"op": "things"},
        {"op": "things", "ses": {"v": 1, "k": "A" * 43}},
    ]
    tokens = [
        seal(b, sender=peer, recipient=gw.public, typ="request", now=NOW).encode() for b in bodies
    ]
    claims = _request_claims(peer.id, gw.id, bodies)
    inner_header = {"alg": "ES256", "typ": JWS_TYP, "jwk": dict(peer.public.jwk), "kid": peer.id}
    outer = {"alg": "ECDH-ES", "enc": "A256GCM", "cty": JWE_CTY, "kid": gw.id}
    reg = jwe.JWERegistry(algorithms=["ECDH-ES", "A256GCM"])

    def encrypt(inner: bytes) -> bytes:
        return jwe.encrypt_compact(outer, inner, public_key(gw.public), registry=reg).encode()

    def open_(token: bytes) -> object:
        return open_sealed(token, recipient=gw, replay=None, now=NOW)

    def from_claims(data: bytes) -> bytes:
        if len(data) > 48 * 1024:
            raise Skip
        sreg = jws.JWSRegistry(algorithms=["ES256"])
        sreg.max_payload_length = 64 * 1024
        return encrypt(
            jws.serialize_compact(inner_header, data, private_key(peer), registry=sreg).encode()
        )

    def from_header(data: bytes) -> bytes:
        if len(data) > 32 * 1024:
            raise Skip
        signing_input = f"{_b64(data)}.{_b64(claims[0])}"
        r, s = decode_dss_signature(
            peer.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        sig = _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return encrypt(f"{signing_input}.{sig}".encode())

    return [
        Target("sealed/token", tokens, lambda d: d, open_),
        Target("sealed/claims", claims, from_claims, open_),
        Target("sealed/header", [json_bytes(inner_header)], from_header, open_),
    ]


# -- session-key frames (docs/protocol.md §8) ---------------------------------------------------
def _sessions() -> list[Target]:
    gw, peer = keypair(1), keypair(2)
    secret, sid = bytes(range(32)), _b64(bytes(16))
    g_end = SessionKeys.derive(
        secret, sid, role="gateway", local=gw.public, remote=peer.public, ttl_s=600
    )
    p_end = SessionKeys.derive(
        secret, sid, role="peer", local=peer.public, remote=gw.public, ttl_s=600
    )
    bodies: list[dict[str, Any]] = [
        {"op": "readproperty", "thing": "living-room", "name": "temperature"},
        {"op": "invokeaction", "thing": "front-door", "name": "lock", "input": {"a": [1]}},
        {"op": "things", "dlg": ["a.b.c"]},
    ]
    frames = [p_end.seal(b, "request", now=NOW).encode() for b in bodies]
    claims = _request_claims(peer.id, gw.id, bodies)
    key = OctKey.import_key(derive_key(secret, sid, TO_GATEWAY, peer.id, gw.id))
    reg = jwe.JWERegistry(algorithms=["dir", "A256GCM"])
    header = {"alg": "dir", "enc": "A256GCM", "kid": sid, "cty": "streembit-msg+json"}

    def open_(token: bytes) -> object:
        return g_end.open(token, replay=None, now=NOW)

    def from_claims(data: bytes) -> bytes:
        if len(data) > 48 * 1024:
            raise Skip
        return jwe.encrypt_compact(header, data, key, registry=reg).encode()

    def announcement(data: bytes) -> object:
        return parse_announcement(json_object(data, "ses"))

    # the gateway's dispatch: a connection's keyring with one accepted session (looked up by
    # the frame's kid), sealed messages for everything else
    ring = Keyring(gw, ttl_s=365 * 86400)  # never expires while the fuzzer runs
    offer = {"v": 1, "k": _b64(secret)}
    ring.accept(Opened(peer.public, {"typ": "request", "jti": "B" * 22, "ses": offer}))
    ring_keys = ring.keys_of(peer.id)
    if ring_keys is None:  # pragma: no cover: accept always starts a session for an offer
        raise RuntimeError("the keyring did not accept the offer")
    ring_seeds = [
        SessionKeys.derive(
            secret, ring_keys.sid, role="peer", local=peer.public, remote=gw.public, ttl_s=600
        )
        .seal(bodies[0], "request", now=NOW)
        .encode(),
        seal(bodies[1], sender=peer, recipient=gw.public, typ="request", now=NOW).encode(),
    ]

    def ring_open(token: bytes) -> object:
        return ring.open(token.decode("latin-1"), None, leeway=100 * 365 * 86400)  # seeds are old

    return [
        Target("session/frame", frames, lambda d: d, open_),
        Target("session/claims", claims, from_claims, open_),
        Target(
            "session/announcement",
            [b'{"id":"' + b"A" * 22 + b'","ttl":600}'],
            lambda d: d,
            announcement,
        ),
        Target("session/keyring", ring_seeds, lambda d: d, ring_open),
    ]


# -- DHT records -----------------------------------------------------------------------------
def _records() -> list[Target]:
    kp = keypair(3)
    texts = [
        make_contact_record(
            kp,
            seq=s,
            addrs=["ws://192.0.2.1:8081/p2p", "wss://gw.example:443/"][:n],
            td_digest="sha256-" + "a" * 43,
            now=NOW,
        ).encode()
        for s, n in ((1, 1), (7, 2))
    ]
    head, _, sig = texts[0].decode().split(".")

    def verify(text: bytes) -> object:
        return verify_record(text, key=kp.id, now=NOW + 1)

    def with_payload(data: bytes) -> bytes:
        return f"{head}.{_b64(data)}.{sig}".encode()

    def with_header(data: bytes) -> bytes:
        return f"{_b64(data)}.{texts[0].decode().split('.')[1]}.{sig}".encode()

    payloads = [_unb64(t.decode().split(".")[1]) for t in texts]
    return [
        Target("dht/record", texts, lambda d: d, verify),
        Target("dht/payload", payloads, with_payload, verify),
        Target("dht/header", [_unb64(head)], with_header, verify),
    ]


# -- ACL -------------------------------------------------------------------------------------
def _acls() -> list[Target]:
    owner, gw, alice, bob = keypair(4), keypair(5), keypair(6), keypair(7)
    acl = new_acl(gw.id, tz="Europe/Berlin", now=NOW)
    first = Grant.for_key(alice.public, things=["front-door"], ops=["readproperty"])
    acl = with_grant(acl, first, now=NOW)
    one = sign_acl(acl, owner)
    acl = with_grant(
        acl,
        Grant.for_key(
            bob.public,
            things=["*"],
            affordances=["lock", "unlock"],
            ops=["invokeaction", "readproperty"],
            nbf=NOW - 10,
            exp=NOW + 3600,
            schedule="mon-fri 08:00-18:00; sat 09:00-12:00",
            role="admin",
        ),
        now=NOW,
    )
    two = sign_acl(acl, owner)
    header = {"alg": "ES256", "typ": "streembit-acl+jws", "kid": owner.id}
    reg = jws.JWSRegistry(algorithms=["ES256"])
    reg.max_payload_length = MAX_ACL_BYTES

    def check(text: str) -> object:
        try:
            return verify_acl(text, owner=owner.public, gateway_id=gw.id, installed_version=None)
        finally:
            read_acl_unverified(text)  # the peer CLI's reader (acl show/grant/revoke)

    def signed(data: bytes) -> str:
        if len(data) > MAX_ACL_BYTES:
            raise Skip
        return jws.serialize_compact(header, data, owner.jose_key(), registry=reg)

    payloads = [_unb64(t.split(".")[1]) for t in (one, two)]
    return [
        Target("acl/jws", [one.encode(), two.encode()], _text, check),
        Target("acl/signed-payload", payloads, signed, check),
    ]


# -- QR / provisioning payload ---------------------------------------------------------------
def _qr() -> list[Target]:
    gw, owner = keypair(8), keypair(9)
    texts = [
        qr.OwnerPayload(owner=owner.public, bootstrap=("192.0.2.7:4242",)).encode(),
        qr.GatewayPayload(
            gateway=gw.public, addrs=("ws://192.0.2.1:8081/p2p",), setup_code=bytes(range(10))
        ).encode(),
    ]
    bodies = []
    for t in texts:
        data = qr.base38_decode(t[len(qr.PREFIX) :])
        bodies.append(data[1:2] + data[qr.HEADER_BYTES : -qr.CRC_BYTES])  # kind + TLVs

    def framed(data: bytes) -> str:
        if not data:
            raise Skip
        head = struct.pack(">BBH", qr.VERSION, data[0], min(len(data) - 1, 0xFFFF)) + data[1:]
        return qr.PREFIX + qr.base38_encode(head + struct.pack(">I", zlib.crc32(head)))

    return [
        Target("qr/text", [t.encode() for t in texts], _text, qr.decode),
        Target("qr/fields", bodies, framed, qr.decode),
    ]


# -- companion frames ------------------------------------------------------------------------
def _companion(workdir: Path) -> list[Target]:
    hub = CompanionHub(
        gateway_id="gw",
        keys={"kitchen": COMPANION_KEY},
        counter_dir=workdir / "ctr",
        timing=Timing(max_frames_per_s=1e9, burst=10**9),
    )
    link = hub.device("kitchen")
    link.send = lambda frame: True
    counter = iter(range(1, 1 << 52))
    up = [
        b'H{"n":"' + b"ab" * 16 + b'","lt":3000,"fw":"1.0","ch":{"temp":"ds18b20"}}',
        b'R{"v":{"temp":21.5,"door":true},"e":{}}',
        b'R{"v":{},"e":{"temp":"no sensor"}}',
        b'A{"id":7,"ok":true,"v":{"relay":true}}',
    ]
    down = [b'C{"id":7,"set":{"relay":true}}', b"K{}", b'H{"n":"' + b"cd" * 16 + b'"}']

    def frame(direction: str) -> Callable[[bytes], bytes]:
        def make(data: bytes) -> bytes:
            kinds = frames.KINDS[direction]
            kind = chr(data[0]) if data and chr(data[0]) in kinds else kinds[2]  # R or C
            payload = data[1:][: frames.MAX_PAYLOAD]
            return frames.encode(COMPANION_KEY, kind, direction, "kitchen", next(counter), payload)

        return make

    def gateway_side(raw: bytes) -> object:
        link.session.floor = 0  # every frame is fresh: the payload is always parsed
        before = link.refused_total
        link._receive(raw)  # what `receive` wraps: whatever it would have to catch surfaces here
        if link.refused_total > before:
            raise frames.FrameError("refused")  # counted by the hub; counted here as a refusal
        return None

    board = frames.Session(COMPANION_KEY, "kitchen", frames.UP, SimpleNamespace(next=lambda: 1))

    def board_side(raw: bytes) -> object:
        board.floor = 0
        board.pending = "cd" * 16
        return board.open(raw)

    make_up, make_down = frame(frames.UP), frame(frames.DOWN)
    raw_up = [make_up(s) for s in up]
    allowed = (StreembitError, frames.FrameError)
    return [
        Target("companion/hub-frame", raw_up, lambda d: d, gateway_side, allowed),
        Target("companion/hub-payload", up, make_up, gateway_side, allowed),
        Target("companion/board-payload", down, make_down, board_side, allowed),
    ]


# -- config ----------------------------------------------------------------------------------
def _config(workdir: Path) -> Target:
    path = workdir / "fuzz.toml"
    seeds = [p.read_bytes() for p in sorted((REPO / "examples").glob("*.toml"))]

    def build(data: bytes) -> Path:
        path.write_bytes(data)
        return path

    def check(p: Path) -> object:
        cfg = load_config(p)  # what `check-config` does ...
        return build_things(cfg.things)  # ... and `run` before anything is opened

    return Target("config/toml", seeds, build, check)


# -- Thing Descriptions ----------------------------------------------------------------------
def _tds(workdir: Path) -> Target:
    cfg = default_config(workdir / "state")
    things = build_things(cfg.things)
    gw = keypair(10)
    tds = [build_td(t, gateway_id=gw.id, base_url="http://192.0.2.1:8080") for t in things.values()]
    tds.append(build_directory_td(gateway_id=gw.id, base_url="http://192.0.2.1:8080", title="d"))
    seeds = [json.dumps(td).encode() for td in tds]
    return Target("wot/td", seeds, _text, validate_td_text)


def _json_policy() -> Target:
    seeds = [b'{"a":[1,2.5,"x",null,true,{"b":{}}]}', b"[]", b'"text"', b"-12.5e3"]
    return Target("jsonsafe/loads", seeds, lambda d: d, jsonsafe.loads)


# -- hole punch (gateway/reach/punch.py, observe.py) -----------------------------------------
def _punch() -> list[Target]:
    plans = [
        b'{"type":"connect","addrs":["203.0.113.10:40000","[2001:db8::1]:443"]}',
        b'{"type":"sync"}',
        b'{"type":"cancel","reason":"busy"}',
    ]
    body = b'{"ip": "203.0.113.10", "port": 40000}'
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    ]
    return [
        Target("reach/punch-message", plans, lambda d: d, parse_punch_message),
        Target("reach/observe-answer", answers, lambda d: d, parse_observe_response),
    ]


# -- router port mapping: NAT-PMP replies (RFC 6886) ------------------------------------------
def _portmap() -> Target:
    public = struct.pack("!BBHI4s", 0, 128, 0, 77, bytes([203, 0, 113, 10]))
    tcp = struct.pack("!BBHIHHI", 0, 130, 0, 77, 4242, 4242, 3600)
    udp = struct.pack("!BBHIHHI", 0, 129, 0, 77, 4242, 5000, 7200)
    return Target("portmap/natpmp-reply", [public, tcp, udp], lambda d: d, natpmp_reply)


# -- router port mapping: PCP MAP replies (RFC 6887) -------------------------------------------
def _pcp() -> Target:
    head = struct.pack("!BBBBII12x", 2, 0x81, 0, 0, 3600, 1234)
    ip = bytes(10) + b"\xff\xff" + bytes([203, 0, 113, 10])
    tcp = head + struct.pack("!12sB3xHH16s", bytes(range(12)), 6, 4242, 4242, ip)
    udp = head + struct.pack("!12sB3xHH16s", bytes(12), 17, 4242, 5000, ip) + bytes([130, 0, 0, 4])
    return Target("portmap/pcp-reply", [tcp, udp + bytes(4)], lambda d: d, pcp_reply)


# -- DHT reachability (wire v2, docs/dht-records.md "Reachability") ---------------------------
def _reach() -> list[Target]:
    node_id, nonce = bytes(range(20)), bytes(range(100, 116))
    args = [msgpack([node_id, nonce, port]) for port in (None, 4100)]
    replies = [
        msgpack({"observed": ["203.0.113.10", 40000], "udp": True, "tcp": None}),
        msgpack({"observed": ["2001:db8::1", 1], "refused": "dialback_refused"}),
    ]
    services = {"relay": "http://203.0.113.100:4100", "ws": "wss://[2001:db8::1]:443/r"}
    infos = [msgpack({"client": False, "services": services}), msgpack({"client": True})]
    return [
        Target("dht/dialback-args", args, lambda d: d, parse_dialback_args),
        Target("dht/dialback-reply", replies, lambda d: d, parse_dialback_reply),
        Target("dht/info-reply", infos, lambda d: d, parse_info_reply),
        Target("dht/nonce-datagram", [b"\x02" + nonce], lambda d: d, parse_nonce_datagram),
    ]


def _person_input(workdir: Path) -> list[Target]:
    """What a person hands the command lines: a JWK public key file (`acl grant --subject`,
    `provision --owner-key`) and a JSON VALUE/INPUT of `streembit-peer write|invoke`."""
    path = workdir / "fuzz.jwk"
    jwk = json.dumps(keypair(11).public.jwk).encode()

    def write(data: bytes) -> Path:
        path.write_bytes(data)
        return path

    values = [b'"text"', b'{"setpoint":21.5,"on":[true,null]}', b"-3e2", b"[1,2]"]
    return [
        Target("identity/jwk-file", [jwk, b" " + jwk + b"\n"], write, load_public),
        Target("cli/json-arg", values, _text, lambda text: json_arg(text, "INPUT")),
    ]


# -- delegation chains (docs/acl.md §6) ------------------------------------------------------
def _delegation() -> Target:
    gw, alice, cleaner = keypair(21), keypair(22), keypair(23)
    grant = Grant.for_key(alice.public, things=["front-door"], ops=["invokeaction"], delegate=2)
    acl = Acl(gateway=gw.id, version=1, iat=NOW, grants=(grant,))
    one = sign_link(
        alice,
        to=cleaner.id,
        gateway_id=gw.id,
        things=["front-door"],
        ops=["invokeaction"],
        exp=NOW + 3600,
        depth=1,
        schedule="tue 09:00-12:00",
        uses=3,
        jti="j1",
        now=NOW,
    )
    now = datetime.fromtimestamp(NOW + 60, UTC)

    def parse(text: str) -> object:
        return verify_chain(
            split_header(text), acl=acl, gateway_id=gw.id, holder=cleaner.id, now=now
        )

    seeds = [one.encode(), (one + "~" + one).encode(), b"a.b.c"]
    return Target("acl/delegation", seeds, _text, parse)


# -- a page of audit records a gateway sends (gateway/audit/remote.py, docs/audit.md §6) -----
def _audit_page() -> Target:
    from gateway.audit.chain import GENESIS, link
    from gateway.audit.record import AuditRecord, to_row
    from gateway.audit.remote import WIRE_COLUMNS, parse_page, to_wire
    from gateway.audit.verify import ChainRecord, Report, check_chain

    recs, prev = [], GENESIS
    for rid in (1, 2, 3):
        row = to_row(AuditRecord(NOW + rid, "owner", "p2p", "auditrecords", "", "audit", True,
                                 "owner", "ok", f"page {rid}", f"r{rid}"))  # fmt: skip
        digest = link(prev, rid, rid if rid != 2 else None, row)
        recs.append(ChainRecord(rid, rid if rid != 2 else None, row, prev, digest))
        prev = digest
    page = {"columns": list(WIRE_COLUMNS), "records": [to_wire(r) for r in recs]}
    seeds = [json.dumps({**page, "last": 3, "more": more}).encode() for more in (False, True)]

    def parse(data: bytes) -> object:  # the reply's JSON (open_sealed reads it with jsonsafe)
        page = parse_page(jsonsafe.loads(data), 0)
        return check_chain(page.records, [], Report(journal=False))

    return Target("audit/page", seeds, lambda d: d, parse)


def make_targets(work: Path) -> list[Target]:
    """Every target; WORK (a folder) holds the config file and the companion counters."""
    return [
        _json_policy(),
        _http_body(),
        *_tokens(),
        *_sealed(),
        *_sessions(),
        *_records(),
        *_acls(),
        *_qr(),
        *_companion(work),
        _config(work),
        _tds(work),
        *_person_input(work),
        *_punch(),
        _portmap(),
        _pcp(),
        *_reach(),
        _delegation(),
        _audit_page(),
    ]
