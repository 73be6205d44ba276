"""Session keys: the symmetric fast path after one sealed exchange (docs/protocol.md §8).

A peer offers a session by putting `ses: {"v": 1, "k": SECRET}` (32 random bytes, base64url)
into a sealed request; the sealed envelope keeps SECRET confidential and signed by the peer. The
gateway answers that request, sealed as always, with `ses: {"id": SID, "ttl": SECONDS}`: SID is
16 random bytes of its own. Both ends derive one key per direction with HKDF-SHA256 (salt SID,
info naming the version, the direction and both ids), so a frame cannot be reflected back or
moved to another pair of keys.

A session frame is a compact JWE (`dir`, `A256GCM`, `kid` SID, `cty` streembit-msg+json) whose
plaintext is the claims JSON itself: the same envelope claims as a sealed message (iss, aud,
iat, exp, jti, typ), the same body checks, the same replay cache. AES-GCM authenticates it: only
the two ends hold the key. A session belongs to one connection and ends with it, or after its
TTL; the owner's administrative operations always need a sealed (signed) message.

All cryptography is `cryptography`'s HKDF and joserfc's JWE, restricted to `dir` + A256GCM.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.errors import ExceededSizeError, JoseError
from joserfc.jwk import OctKey

from gateway.errors import MessageError
from gateway.identity import PublicIdentity
from gateway.messages import claims as cl
from gateway.messages import codes
from gateway.messages.codec import (
    b64url_decode,
    b64url_encode,
    header_object,
    json_bytes,
    json_object,
)
from gateway.messages.replay import CLOCK_LEEWAY_S, ReplayCache
from gateway.messages.seal import (
    DEFAULT_TTL_S,
    MAX_MESSAGE_BYTES,
    MAX_TTL_S,
    Opened,
    attributed,
    check_claims,
    check_segments,
    new_jti,
)

SESSION_ALG: Final = "dir"  # the content key is the derived session key itself
SESSION_ENC: Final = "A256GCM"
SESSION_CTY: Final = "streembit-msg+json"  # the plaintext is the claims JSON, not a JWS
SESSION_HEADER_MEMBERS: Final = frozenset({"alg", "enc", "kid", "cty"})
SECRET_BYTES: Final = 32  # the peer's offered secret: a full AES-256 key's worth of entropy
SID_BYTES: Final = 16  # the gateway's session id, also the HKDF salt: its own fresh randomness
#: How long the gateway keeps a session: short enough that a key lives for at most a few
#: thousand frames at the per-peer rate limit (random 96-bit IVs stay far from collisions).
SESSION_TTL_S: Final = 600
MAX_SESSION_TTL_S: Final = 3600  # a peer refuses an announcement promising longer
#: A peer stops using a session this long before the gateway's TTL runs out: one request's
#: lifetime (the default 30 s) plus two clock leeways, so a frame of it is still accepted
#: when it arrives. An announced TTL must exceed it to leave any time to send (MIN_SESSION_TTL_S).
RENEW_MARGIN_S: Final = DEFAULT_TTL_S + 2 * CLOCK_LEEWAY_S
MIN_SESSION_TTL_S: Final = RENEW_MARGIN_S + 1  # a shorter announcement is refused by the peer
#: Operations a session frame may carry: the Thing operations (`claims.DLG_OPS`). Never an
#: administrative one: tests/test_sessionkeys.py asserts it, and the P2P dispatch checks again.
SESSION_OPS: Final = frozenset(cl.DLG_OPS)
INFO_PREFIX: Final = b"streembit-session/1"
TO_GATEWAY: Final = b"peer-to-gateway"
TO_PEER: Final = b"gateway-to-peer"

_REGISTRY: Final = jwe.JWERegistry(algorithms=[SESSION_ALG, SESSION_ENC])

Role = Literal["gateway", "peer"]


def _fail(code: str, message: str) -> MessageError:
    return MessageError(message, code=code)


def new_offer() -> tuple[dict[str, Any], bytes]:
    """A fresh offer claim for a sealed request, and the secret to keep for `derive`."""
    secret = secrets.token_bytes(SECRET_BYTES)
    return {"v": cl.SESSION_VERSION, "k": b64url_encode(secret)}, secret


def offer_secret(offer: dict[str, Any]) -> bytes:
    """The secret of an offer claim already shape-checked by `claims.check_body`."""
    return b64url_decode(str(offer["k"]), "session secret")


def new_sid() -> str:
    """A fresh session id (the gateway's half of the key derivation)."""
    return b64url_encode(secrets.token_bytes(SID_BYTES))


def parse_announcement(value: Any) -> tuple[str, int]:
    """(SID, TTL) of the `ses` claim of the gateway's answer; `bad_format` if malformed."""
    if not isinstance(value, dict) or set(value) != {"id", "ttl"}:
        raise _fail(codes.BAD_FORMAT, 'ses must be {"id": SID, "ttl": SECONDS}')
    sid, ttl = value["id"], value["ttl"]
    if not isinstance(sid, str) or len(sid) != 22 or not cl.JTI_PATTERN.fullmatch(sid):
        raise _fail(codes.BAD_FORMAT, "ses.id must be base64url of 16 bytes")
    b64url_decode(sid, "ses.id")  # canonical form only (bad_format)
    if type(ttl) is not int or not MIN_SESSION_TTL_S <= ttl <= MAX_SESSION_TTL_S:
        span = f"{MIN_SESSION_TTL_S}..{MAX_SESSION_TTL_S}"
        raise _fail(codes.BAD_FORMAT, f"ses.ttl must be {span} seconds")
    return sid, ttl


def derive_key(secret: bytes, sid: str, direction: bytes, peer_id: str, gateway_id: str) -> bytes:
    """The 32-byte key of one direction (HKDF-SHA256; the vectors in tests/vectors)."""
    info = b"|".join((INFO_PREFIX, direction, peer_id.encode(), gateway_id.encode()))
    salt = b64url_decode(sid, "session id")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def frame_alg(token: str) -> str | None:
    """The `alg` of a compact frame's header, or None when it has none (cheap dispatch)."""
    try:
        alg = header_object(token, "header").get("alg")
    except MessageError:
        return None
    return alg if isinstance(alg, str) else None


@dataclass
class SessionKeys:
    """One end of a session: it seals to and opens from the other end (REMOTE)."""

    sid: str
    local: PublicIdentity
    remote: PublicIdentity
    send_until: float  # time.monotonic() after which this end seals no more session frames
    accept_until: float  # and after which it refuses the other end's (`session_expired`)
    _send: OctKey = field(repr=False)
    _recv: OctKey = field(repr=False)

    @classmethod
    def derive(
        cls,
        secret: bytes,
        sid: str,
        *,
        role: Role,
        local: PublicIdentity,
        remote: PublicIdentity,
        ttl_s: float,
    ) -> SessionKeys:
        """The keys of one end. The gateway uses and accepts the session for TTL_S; a peer
        stops sending RENEW_MARGIN_S earlier and accepts the gateway's frames a leeway later."""
        peer, gateway = (remote, local) if role == "gateway" else (local, remote)
        to_gw = derive_key(secret, sid, TO_GATEWAY, peer.id, gateway.id)
        to_peer = derive_key(secret, sid, TO_PEER, peer.id, gateway.id)
        send, recv = (to_peer, to_gw) if role == "gateway" else (to_gw, to_peer)
        start = time.monotonic()
        send_s, accept_s = (
            (ttl_s, ttl_s)
            if role == "gateway"
            else (
                ttl_s - RENEW_MARGIN_S,
                ttl_s + CLOCK_LEEWAY_S,
            )
        )
        return cls(
            sid,
            local,
            remote,
            start + send_s,
            start + accept_s,
            OctKey.import_key(send),
            OctKey.import_key(recv),
        )

    def usable(self) -> bool:
        """Whether this end may still seal a frame on the session."""
        return time.monotonic() < self.send_until

    def retire(self) -> None:
        """Seal no more frames on the session; frames of it still due are opened until its
        accept time (a refusal that names it may be forged: it proves nothing)."""
        self.send_until = 0.0

    def seal(
        self,
        body: dict[str, Any],
        typ: str,
        *,
        jti: str | None = None,
        ttl: int = DEFAULT_TTL_S,
        now: float | None = None,
    ) -> str:
        """BODY as a session frame to REMOTE; `MessageError` where `seal` would refuse too."""
        cl.check_type(typ)
        if not 1 <= ttl <= MAX_TTL_S:
            raise _fail(codes.TOO_LONG_LIVED, f"ttl must be 1..{MAX_TTL_S} seconds")
        if set(body) & set(cl.ENVELOPE_CLAIMS) or "ses" in body:
            raise _fail(codes.BAD_FORMAT, "body must not set envelope claims or ses")
        cl.check_body(typ, body)
        iat = int(time.time() if now is None else now)
        claims = {
            "iss": self.local.id,
            "aud": self.remote.id,
            "iat": iat,
            "exp": iat + ttl,
            "jti": new_jti() if jti is None else cl.check_jti(jti),
            "typ": typ,
            **body,
        }
        header = {"alg": SESSION_ALG, "enc": SESSION_ENC, "kid": self.sid, "cty": SESSION_CTY}
        token = jwe.encrypt_compact(header, json_bytes(claims), self._send, registry=_REGISTRY)
        if len(token) > MAX_MESSAGE_BYTES:
            raise _fail(codes.TOO_LARGE, f"session frame exceeds {MAX_MESSAGE_BYTES} bytes")
        return token

    def open(
        self,
        token: str | bytes,
        *,
        replay: ReplayCache | None,
        now: float | None = None,
        leeway: float = CLOCK_LEEWAY_S,
    ) -> Opened:
        """Decrypt and check a session frame from REMOTE (docs/protocol.md §8.3, in order)."""
        if not isinstance(token, str | bytes):
            raise _fail(codes.BAD_FORMAT, "message must be text")
        if len(token) > MAX_MESSAGE_BYTES:
            raise _fail(codes.TOO_LARGE, f"message exceeds {MAX_MESSAGE_BYTES} bytes")
        if not token.isascii():
            raise _fail(codes.BAD_FORMAT, "message is not ASCII")
        if isinstance(token, bytes):
            token = token.decode("ascii")
        parts = token.split(".")
        if len(parts) != 5:
            raise _fail(codes.BAD_FORMAT, "not a compact JWE (5 segments)")
        self._check_header(header_object(token, "session header"))
        check_segments(parts, "a dir JWE has an empty encrypted key")
        try:
            plaintext = jwe.decrypt_compact(token, self._recv, registry=_REGISTRY).plaintext
        except ExceededSizeError:
            raise _fail(codes.TOO_LARGE, "message part exceeds the size limits") from None
        except (JoseError, ValueError):
            raise _fail(codes.DECRYPT_FAILED, "cannot decrypt (wrong key or tampered)") from None
        if plaintext is None:
            raise _fail(codes.DECRYPT_FAILED, "cannot decrypt")
        now = time.time() if now is None else now
        with attributed(self.remote):  # only the peer holds this key: the frame is its
            claims = json_object(plaintext, "claims")
            check_claims(claims, self.remote, self.local, now, leeway)
            if "ses" in claims:
                raise _fail(codes.BAD_FORMAT, "a session offer must come in a sealed request")
            if claims["typ"] == cl.REQUEST and claims["op"] not in SESSION_OPS:
                raise _fail(codes.NEEDS_SIGNATURE, f"op {claims['op']} needs a sealed message")
            if replay is not None:
                replay.check_and_add(self.remote.id, claims["jti"], claims["exp"], now)
        return Opened(sender=self.remote, claims=claims, session=self.sid)

    def _check_header(self, header: dict[str, Any]) -> None:
        if header.get("alg") != SESSION_ALG or header.get("enc") != SESSION_ENC:
            raise _fail(codes.BAD_ALG, f"session alg/enc must be {SESSION_ALG}/{SESSION_ENC}")
        if header.keys() != SESSION_HEADER_MEMBERS:
            members = sorted(SESSION_HEADER_MEMBERS)
            raise _fail(codes.BAD_FORMAT, f"session header members must be {members}")
        if header["cty"] != SESSION_CTY:
            raise _fail(codes.BAD_FORMAT, f"session cty must be {SESSION_CTY!r}")
        if header["kid"] != self.sid:
            raise _fail(codes.UNKNOWN_SESSION, "no session with this id on this connection")
        if time.monotonic() >= self.accept_until:
            raise _fail(codes.SESSION_EXPIRED, "the session key has expired; offer a new one")
