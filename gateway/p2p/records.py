"""Signed DHT records: a compact JWS (ES256) whose signer's id is the DHT key.

A record is ``BASE64URL(header) . BASE64URL(payload) . BASE64URL(signature)`` with the
protected header ``{"alg": "ES256", "typ": "streembit-record+jws", "jwk": <signer's public JWK>}``
and a JSON payload ``{"id", "seq", "iat", "exp", "kind", ...}``; for ``kind == "contact"`` also
``addrs`` (WebSocket URLs) and ``td`` (the TD digest). The id is the RFC 7638 thumbprint of the
header's ``jwk`` and the DHT key the record is filed under (stored under sha1(id), as in kademlia).

`verify_record` checks, in this order, and refuses with a `P2PError` whose code says why:
type, size, JWS structure and header, payload fields, thumbprint == id, id == DHT key, time,
and last the signature (the costly step, done only for records that would otherwise be kept).
The format, with a test vector, is documented in docs/dht-records.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gateway.b64 import Base64UrlError
from gateway.codes import Code
from gateway.compact import peek_header
from gateway.errors import IdentityError, P2PError
from gateway.identity import KeyPair, PublicIdentity, public_from_jwk
from gateway.jsonsafe import JsonInputError, JsonLimits, loads_object

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_TTL",
    "MAX_LIFETIME",
    "MAX_RECORD_BYTES",
    "RECORD_ALG",
    "RECORD_TYP",
    "Record",
    "RecordCache",
    "RecordCode",
    "dht_key_digest",
    "make_contact_record",
    "verify_record",
]

RECORD_TYP: Final = "streembit-record+jws"
RECORD_ALG: Final = "ES256"
KIND_CONTACT: Final = "contact"

# One DHT RPC is one datagram of at most 8 KiB of msgpack (rpc.py); half leaves room for framing.
MAX_RECORD_BYTES: Final = 4096
_RECORD_JSON: Final = JsonLimits(max_bytes=MAX_RECORD_BYTES, max_depth=8)
# How far an iat may lie in the future: Pi boards without an RTC drift before NTP syncs.
CLOCK_SKEW: Final = 60
# Longest lifetime (exp - iat) a node agrees to keep: kademlia's one-week storage TTL (the
# gateway config allows record_ttl_s up to 7 days); owners re-sign at half-life anyway.
MAX_LIFETIME: Final = 7 * 86_400
# Default lifetime of a contact record; the owner re-signs it at half-life.
DEFAULT_TTL: Final = 3600
# JSON numbers above 2**53 lose precision in other implementations (JavaScript).
MAX_INT: Final = 2**53 - 1
MAX_ADDRS: Final = 8
MAX_ADDR_LEN: Final = 256
MAX_TD_LEN: Final = 256

_BAD_URL_CHARS: Final = re.compile(r"[\s\x00-\x1f\x7f]")
_HEADER_KEYS: Final = frozenset({"alg", "typ", "jwk"})
_REQUIRED: Final = ("id", "seq", "iat", "exp", "kind")
_CONTACT_REQUIRED: Final = ("addrs", "td")


class RecordCode:
    """Stable `P2PError.code` values for refused records (one per reason; gateway.codes)."""

    NOT_TEXT = Code.RECORD_NOT_TEXT
    TOO_LARGE = Code.RECORD_TOO_LARGE
    MALFORMED = Code.RECORD_MALFORMED
    BAD_ALG = Code.RECORD_BAD_ALG
    BAD_KEY = Code.RECORD_BAD_KEY
    BAD_SIGNATURE = Code.RECORD_BAD_SIGNATURE
    KEY_MISMATCH = Code.RECORD_KEY_MISMATCH
    WRONG_DHT_KEY = Code.RECORD_WRONG_DHT_KEY
    MISSING_FIELD = Code.RECORD_MISSING_FIELD
    BAD_FIELD = Code.RECORD_BAD_FIELD
    EXPIRED = Code.RECORD_EXPIRED
    NOT_YET_VALID = Code.RECORD_NOT_YET_VALID


@dataclass(frozen=True)
class Record:
    """A verified record. `text` is the compact JWS exactly as signed and stored."""

    id: str
    seq: int
    iat: int
    exp: int
    kind: str
    addrs: tuple[str, ...]
    td: str
    text: str = field(repr=False)
    jwk: Mapping[str, str] = field(repr=False, compare=False, hash=False)
    claims: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def dkey(self) -> bytes:
        """The 20-byte DHT key this record is filed under: sha1(id)."""
        return dht_key_digest(self.id)

    def order(self) -> tuple[int, str]:
        """Replacement order: higher seq wins; equal seqs fall back to the text (deterministic)."""
        return (self.seq, self.text)

    def newer_than(self, other: Record) -> bool:
        return self.order() > other.order()


def dht_key_digest(key: str) -> bytes:
    """kademlia's digest of a string key: sha1 over its UTF-8 bytes (not a security hash here)."""
    return hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).digest()


def _fail(code: str, message: str) -> P2PError:
    return P2PError(f"DHT record refused: {message}", code=code)


def _strict_json(data: bytes, what: str) -> dict[str, Any]:
    """The record's payload under the one bounded JSON policy (gateway.jsonsafe)."""
    try:
        return loads_object(data, _RECORD_JSON, what=what)
    except JsonInputError as exc:
        raise _fail(RecordCode.MALFORMED, f"{exc} [{exc.problem}]") from None


def _header(raw: bytes) -> dict[str, Any]:
    """The record's protected header (`gateway.compact.peek_header`), under the same policy."""
    try:
        return peek_header(raw, _RECORD_JSON, what="header")
    except JsonInputError as exc:
        raise _fail(RecordCode.MALFORMED, f"{exc} [{exc.problem}]") from None
    except Base64UrlError as exc:
        raise _fail(RecordCode.MALFORMED, str(exc)) from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT


def _check_addr(addr: Any) -> str:
    if not isinstance(addr, str) or not 0 < len(addr) <= MAX_ADDR_LEN:
        raise _fail(RecordCode.BAD_FIELD, "addrs entries must be short strings")
    if _BAD_URL_CHARS.search(addr):
        raise _fail(RecordCode.BAD_FIELD, "addrs entry contains whitespace or control characters")
    try:
        parts = urlsplit(addr)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise _fail(RecordCode.BAD_FIELD, f"addrs entry is not a URL: {addr!r}") from None
    if parts.scheme not in ("ws", "wss") or not host or parts.username or parts.password:
        raise _fail(RecordCode.BAD_FIELD, f"addrs entry is not a ws:// or wss:// URL: {addr!r}")
    return addr


def _check_fields(claims: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """Presence and types of the payload members; returns (addrs, td)."""
    for name in _REQUIRED:
        if name not in claims:
            raise _fail(RecordCode.MISSING_FIELD, f"payload lacks {name!r}")
    if not isinstance(claims["id"], str) or not claims["id"]:
        raise _fail(RecordCode.BAD_FIELD, "id must be a non-empty string")
    for name in ("seq", "iat", "exp"):
        if not _is_int(claims[name]):
            raise _fail(RecordCode.BAD_FIELD, f"{name} must be an integer in [0, 2**53)")
    if claims["kind"] != KIND_CONTACT:
        raise _fail(RecordCode.BAD_FIELD, f"unknown record kind {claims['kind']!r}")
    for name in _CONTACT_REQUIRED:
        if name not in claims:
            raise _fail(RecordCode.MISSING_FIELD, f"contact record lacks {name!r}")
    addrs = claims["addrs"]
    if not isinstance(addrs, list) or not 0 < len(addrs) <= MAX_ADDRS:
        raise _fail(RecordCode.BAD_FIELD, f"addrs must be a list of 1 to {MAX_ADDRS} URLs")
    td = claims["td"]
    if not isinstance(td, str) or not 0 < len(td) <= MAX_TD_LEN:
        raise _fail(RecordCode.BAD_FIELD, f"td must be a string of 1 to {MAX_TD_LEN} characters")
    if claims["exp"] <= claims["iat"]:
        raise _fail(RecordCode.BAD_FIELD, "exp must be after iat")
    if claims["exp"] - claims["iat"] > MAX_LIFETIME:
        raise _fail(RecordCode.BAD_FIELD, f"lifetime exceeds {MAX_LIFETIME} s")
    return tuple(_check_addr(a) for a in addrs), td


@dataclass(frozen=True)
class _Parsed:
    record: Record
    signer: PublicIdentity
    jws_obj: jws.CompactSignature


def _parse(value: object) -> _Parsed:
    """Structure, header and payload checks (no signature, no key binding, no time)."""
    if isinstance(value, str):
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise _fail(RecordCode.MALFORMED, "a compact JWS is ASCII") from None
    elif isinstance(value, bytes):
        raw = value
    else:
        raise _fail(RecordCode.NOT_TEXT, f"value is {type(value).__name__}, not text")
    if len(raw) > MAX_RECORD_BYTES:
        raise _fail(RecordCode.TOO_LARGE, f"{len(raw)} bytes > {MAX_RECORD_BYTES}")
    if raw.count(b".") != 2:
        raise _fail(RecordCode.MALFORMED, "not a compact JWS (three dot-separated parts)")
    try:
        text = raw.decode("ascii")
        obj = jws.extract_compact(raw)
    except (UnicodeDecodeError, JoseError, ValueError, TypeError) as exc:
        raise _fail(RecordCode.MALFORMED, f"not a compact JWS: {exc}") from None
    header = _header(raw)
    if header.get("alg") != RECORD_ALG:
        raise _fail(RecordCode.BAD_ALG, f"alg {header.get('alg')!r} is not {RECORD_ALG}")
    if header.get("typ") != RECORD_TYP:
        raise _fail(RecordCode.MALFORMED, f"typ {header.get('typ')!r} is not {RECORD_TYP}")
    if set(header) != _HEADER_KEYS:
        extra = sorted(set(header) - _HEADER_KEYS) or sorted(_HEADER_KEYS - set(header))
        raise _fail(RecordCode.MALFORMED, f"header members must be alg, typ, jwk (got {extra})")
    try:
        signer = public_from_jwk(header["jwk"])
    except IdentityError as exc:
        raise _fail(RecordCode.BAD_KEY, f"header jwk: {exc}") from None
    claims = _strict_json(obj.payload, "payload")
    addrs, td = _check_fields(claims)
    if signer.id != claims["id"]:  # PublicIdentity.id is the RFC 7638 thumbprint
        raise _fail(RecordCode.KEY_MISMATCH, "id is not the thumbprint of the signing key")
    record = Record(
        id=claims["id"],
        seq=claims["seq"],
        iat=claims["iat"],
        exp=claims["exp"],
        kind=claims["kind"],
        addrs=addrs,
        td=td,
        text=text,
        jwk=dict(signer.jwk),
        claims=claims,
    )
    return _Parsed(record=record, signer=signer, jws_obj=obj)


def _check_binding(rec: Record, key: str | None, key_digest: bytes | None) -> None:
    if key is not None and rec.id != key:
        raise _fail(RecordCode.WRONG_DHT_KEY, "record id is not the DHT key it is filed under")
    if key_digest is not None and rec.dkey != key_digest:
        raise _fail(RecordCode.WRONG_DHT_KEY, "sha1(id) is not the DHT key it is filed under")


def _check_time(rec: Record, now: float) -> None:
    if rec.exp <= now:
        raise _fail(RecordCode.EXPIRED, f"expired at {rec.exp} (now {int(now)})")
    if rec.iat > now + CLOCK_SKEW:
        raise _fail(RecordCode.NOT_YET_VALID, f"iat {rec.iat} is in the future (now {int(now)})")


def _check_signature(parsed: _Parsed) -> None:
    try:
        key = ECKey.import_key(parsed.signer.key)  # from the parsed key: no second JWK parse
        ok = jws.validate_compact(parsed.jws_obj, key, algorithms=[RECORD_ALG])
    except JoseError as exc:
        raise _fail(RecordCode.BAD_SIGNATURE, f"signature check failed: {exc}") from None
    if not ok:
        raise _fail(RecordCode.BAD_SIGNATURE, "signature does not verify")


def verify_record(
    value: object,
    *,
    key: str | None = None,
    key_digest: bytes | None = None,
    now: float | None = None,
) -> Record:
    """Verify an untrusted record filed under `key` (the id) or `key_digest` (sha1 of the id).

    At least one of `key` / `key_digest` is required (a record is only meaningful under its
    key). Raises `P2PError` with a `RecordCode` code; never returns an unverified record.
    """
    if key is None and key_digest is None:
        raise TypeError("verify_record needs key or key_digest")
    return _verify(value, key=key, key_digest=key_digest, now=now)


def verify_unbound(value: object, *, now: float | None = None) -> Record:
    """Verify a record without a DHT key to bind it to (for the publisher, who derives the key)."""
    return _verify(value, key=None, key_digest=None, now=now)


def _verify(
    value: object, *, key: str | None, key_digest: bytes | None, now: float | None
) -> Record:
    parsed = _parse(value)
    _check_binding(parsed.record, key, key_digest)
    _check_time(parsed.record, time.time() if now is None else now)
    _check_signature(parsed)
    return parsed.record


def make_contact_record(
    kp: KeyPair,
    *,
    seq: int,
    addrs: list[str] | tuple[str, ...],
    td_digest: str,
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """Sign a contact record for `kp` (compact JWS, ES256). Raises `P2PError` on bad input."""
    iat = int(time.time() if now is None else now)
    payload = {
        "id": kp.id,
        "seq": seq,
        "iat": iat,
        "exp": iat + int(ttl),
        "kind": KIND_CONTACT,
        "addrs": list(addrs),
        "td": td_digest,
    }
    _check_fields(payload)
    header = {"alg": RECORD_ALG, "typ": RECORD_TYP, "jwk": dict(kp.public.jwk)}
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text = jws.serialize_compact(header, body, kp.jose_key(), algorithms=[RECORD_ALG])
    if len(text) > MAX_RECORD_BYTES:
        raise _fail(
            RecordCode.TOO_LARGE, f"signed record is {len(text)} bytes > {MAX_RECORD_BYTES}"
        )
    return text


class RecordCache:
    """Records whose signature this node already verified, by SHA-256 of their text (LRU).

    The same record reaches a node many times (republish, re-replication, hand-over, lookups
    answered by several holders); a hit skips the parse and the ES256 check (about 0.19 ms) and
    still checks the key binding and the time, which depend on the call.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._data: OrderedDict[bytes, Record] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def verify(
        self,
        value: object,
        *,
        key: str | None = None,
        key_digest: bytes | None = None,
        now: float | None = None,
    ) -> Record:
        """`verify_record` (or `verify_unbound` without key), answered from the cache if seen."""
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        digest = hashlib.sha256(raw).digest() if isinstance(raw, bytes) else None
        cached = self._data.get(digest) if digest is not None else None
        if digest is None or cached is None:
            self.misses += 1
            rec = _verify(value, key=key, key_digest=key_digest, now=now)
            if digest is not None:
                self._data[digest] = rec
                while len(self._data) > self._size:
                    self._data.popitem(last=False)
            return rec
        self.hits += 1
        self._data.move_to_end(digest)
        _check_binding(cached, key, key_digest)
        _check_time(cached, time.time() if now is None else now)
        return cached
