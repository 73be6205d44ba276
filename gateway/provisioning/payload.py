"""The provisioning payload: compact, versioned, checksummed QR text (docs/provisioning.md).

Like Matter's ``MT:`` onboarding payload, the text is a prefix and base38 digits, so the whole of
it fits QR alphanumeric mode (the densest mode for text)::

    SB:<base38 of: version(1) kind(1) length(2, big-endian) TLVs(length) CRC-32(4, big-endian)>

The version byte comes first so that a later version may change everything after it; the
CRC-32 (zlib / ISO-HDLC) covers every byte before it and catches misreads and typing mistakes
(it is no signature: the owner compares the id the gateway prints with the one their peer shows).
Each TLV is tag(1) length(1) value. Tags below 0x80 are critical (an unknown one is refused),
tags 0x80-0xFF are optional extensions that a reader skips.

Two kinds: an **owner** payload (the owner's public key and optional DHT bootstrap hints, shown by
`streembit-peer owner-qr`, read by `streembit-gateway provision`) and a **gateway** payload (the
gateway's public key, its WebSocket addresses, bootstrap hints and the one-time setup code,
shown by `streembit-gateway qr`, read by `streembit-peer claim`).

Every refusal is a `ProvisioningError` whose code names the problem (`not_streembit_payload`,
`payload_encoding`, `payload_truncated`, `payload_version`, `payload_checksum`, `payload_kind`,
`payload_malformed`, `payload_too_large`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import IdentityError, ProvisioningError
from gateway.identity import PublicIdentity
from gateway.text import clean

PREFIX: Final = "SB:"
VERSION: Final = 1
KIND_OWNER: Final = 1
KIND_GATEWAY: Final = 2
KIND_NAMES: Final = {KIND_OWNER: "owner", KIND_GATEWAY: "gateway"}

TAG_PUBLIC_KEY: Final = 0x01  # 33 bytes: compressed P-256 point (SEC 1)
TAG_ADDRESS: Final = 0x02  # UTF-8 ws:// or wss:// URL of the gateway (repeatable)
TAG_BOOTSTRAP: Final = 0x03  # UTF-8 "HOST:PORT" of a DHT node (repeatable)
TAG_SETUP_CODE: Final = 0x04  # the gateway's one-time setup code (SETUP_CODE_BYTES)
FIRST_OPTIONAL_TAG: Final = 0x80  # tags from here on are skipped when unknown

#: Base38 as in Matter (5.1.3.1): 3 bytes -> 5 characters, least significant digit first.
BASE38: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-."
_CHARS_FOR_BYTES: Final = {1: 2, 2: 4, 3: 5}
_BYTES_FOR_CHARS: Final = {2: 1, 4: 2, 5: 3}

HEADER_BYTES: Final = 4
CRC_BYTES: Final = 4
COMPRESSED_KEY_BYTES: Final = 33
SETUP_CODE_BYTES: Final = 10  # 80 random bits (docs/provisioning.md, threat model)
MAX_TEXT_CHARS: Final = 1200  # a version 40 QR holds 4296 alphanumerics; ours are ~70-200
MAX_TLV_BYTES: Final = 600
MAX_REPEATED: Final = 8  # addresses or bootstrap hints per payload
MAX_HINT_BYTES: Final = 200


def _err(code: str, message: str) -> ProvisioningError:
    return ProvisioningError(message, code=code)


# --------------------------------------------------------------------------- base38
def base38_encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data), 3):
        chunk = data[i : i + 3]
        value = int.from_bytes(chunk, "little")
        for _ in range(_CHARS_FOR_BYTES[len(chunk)]):
            value, digit = divmod(value, 38)
            out.append(BASE38[digit])
    return "".join(out)


def base38_decode(text: str) -> bytes:
    out = bytearray()
    for i in range(0, len(text), 5):
        chunk = text[i : i + 5]
        nbytes = _BYTES_FOR_CHARS.get(len(chunk))
        if nbytes is None:
            raise _err(
                "payload_truncated",
                f"payload is {len(text)} base38 characters, not a whole number of groups: "
                "it is truncated or corrupted",
            )
        value = 0
        for ch in reversed(chunk):
            digit = BASE38.find(ch)
            if digit < 0:
                raise _err("payload_encoding", f"character {clean(ch, 4)!r} is not a base38 digit")
            value = value * 38 + digit
        if value >= 1 << (8 * nbytes):
            if len(chunk) < 5:  # a cut-off last group: the usual sign of a truncated text
                raise _err(
                    "payload_truncated",
                    "the payload ends in an incomplete base38 group: it is truncated",
                )
            raise _err("payload_encoding", "a base38 group is out of range: corrupted payload")
        out += value.to_bytes(nbytes, "little")
    return bytes(out)


# --------------------------------------------------------------------------- payloads
@dataclass(frozen=True)
class OwnerPayload:
    """The owner's public key and optional DHT bootstrap hints ("HOST:PORT")."""

    owner: PublicIdentity
    bootstrap: tuple[str, ...] = ()

    def encode(self) -> str:
        tlvs = [(TAG_PUBLIC_KEY, self.owner.compressed())]
        tlvs += [(TAG_BOOTSTRAP, h.encode("utf-8")) for h in self.bootstrap]
        return _encode(KIND_OWNER, tlvs)


@dataclass(frozen=True)
class GatewayPayload:
    """The gateway's key, addresses, bootstrap hints and (while unclaimed) its setup code."""

    gateway: PublicIdentity
    addrs: tuple[str, ...] = ()
    bootstrap: tuple[str, ...] = ()
    setup_code: bytes | None = None

    def encode(self) -> str:
        tlvs = [(TAG_PUBLIC_KEY, self.gateway.compressed())]
        tlvs += [(TAG_ADDRESS, a.encode("utf-8")) for a in self.addrs]
        tlvs += [(TAG_BOOTSTRAP, h.encode("utf-8")) for h in self.bootstrap]
        if self.setup_code is not None:
            tlvs.append((TAG_SETUP_CODE, self.setup_code))
        return _encode(KIND_GATEWAY, tlvs)

    def __repr__(self) -> str:  # never show the setup code in logs or tracebacks
        code = "set" if self.setup_code is not None else "none"
        return (
            f"GatewayPayload(gateway={self.gateway.id!r}, addrs={self.addrs!r}, "
            f"bootstrap={self.bootstrap!r}, setup_code=<{code}>)"
        )


Payload = OwnerPayload | GatewayPayload


def _encode(kind: int, tlvs: list[tuple[int, bytes]]) -> str:
    body = bytearray()
    for tag, value in tlvs:
        if len(value) > 255:
            raise _err("payload_too_large", f"field 0x{tag:02x} is longer than 255 bytes")
        body += bytes((tag, len(value))) + value
    if len(body) > MAX_TLV_BYTES:
        raise _err("payload_too_large", f"payload fields exceed {MAX_TLV_BYTES} bytes")
    head = struct.pack(">BBH", VERSION, kind, len(body)) + bytes(body)
    return PREFIX + base38_encode(head + struct.pack(">I", zlib.crc32(head)))


def _public_key(value: bytes) -> PublicIdentity:
    if len(value) != COMPRESSED_KEY_BYTES or value[0] not in (2, 3):
        raise _err("payload_malformed", "the public key is not a compressed P-256 point")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), value)
        return PublicIdentity.from_key(key)
    except (ValueError, IdentityError):
        raise _err("payload_malformed", "the public key is not a point on P-256") from None


def _text(tag: int, value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise _err("payload_malformed", f"field 0x{tag:02x} is not UTF-8") from None
    if not text or len(value) > MAX_HINT_BYTES or not text.isprintable() or " " in text:
        raise _err("payload_malformed", f"field 0x{tag:02x} is not a printable address")
    return text


def _frame(text: str) -> tuple[int, bytes]:
    """Check prefix, encoding, version, length and checksum; return (kind, TLV bytes)."""
    if not isinstance(text, str):
        raise _err("not_streembit_payload", "a payload is text")
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        raise _err("payload_too_large", f"payload longer than {MAX_TEXT_CHARS} characters")
    if not text.upper().startswith(PREFIX):
        raise _err(
            "not_streembit_payload",
            f"not a Streembit provisioning payload (it should start with {PREFIX!r}, "
            f"this starts with {clean(text[:16], 24)!r})",
        )
    data = base38_decode(text[len(PREFIX) :].upper())
    if not data:
        raise _err("payload_truncated", "the payload is empty after its prefix")
    if data[0] != VERSION:
        raise _err(
            "payload_version",
            f"payload version {data[0]} is not supported (this software reads version {VERSION})",
        )
    if len(data) < HEADER_BYTES:
        raise _err("payload_truncated", "the payload is truncated (incomplete header)")
    _, kind, length = struct.unpack(">BBH", data[:HEADER_BYTES])
    need = HEADER_BYTES + length + CRC_BYTES
    if len(data) < need:
        raise _err("payload_truncated", f"the payload is truncated ({len(data)} of {need} bytes)")
    if len(data) > need:
        raise _err("payload_malformed", f"{len(data) - need} stray bytes after the checksum")
    (crc,) = struct.unpack(">I", data[-CRC_BYTES:])
    if zlib.crc32(data[:-CRC_BYTES]) != crc:
        raise _err("payload_checksum", "checksum mismatch: the payload was misread or mistyped")
    if kind not in KIND_NAMES:
        raise _err("payload_kind", f"unknown payload kind {kind}")
    return kind, data[HEADER_BYTES:-CRC_BYTES]


def _fields(body: bytes) -> dict[int, list[bytes]]:
    fields: dict[int, list[bytes]] = {}
    i = 0
    while i < len(body):
        if i + 2 > len(body):
            raise _err("payload_malformed", "a field header is cut off")
        tag, length = body[i], body[i + 1]
        value = body[i + 2 : i + 2 + length]
        if len(value) != length:
            raise _err("payload_malformed", f"field 0x{tag:02x} is cut off")
        i += 2 + length
        if tag >= FIRST_OPTIONAL_TAG:
            continue  # an optional extension this version does not know
        if tag not in (TAG_PUBLIC_KEY, TAG_ADDRESS, TAG_BOOTSTRAP, TAG_SETUP_CODE):
            raise _err("payload_malformed", f"unknown critical field 0x{tag:02x}")
        fields.setdefault(tag, []).append(value)
    for tag, values in fields.items():
        limit = MAX_REPEATED if tag in (TAG_ADDRESS, TAG_BOOTSTRAP) else 1
        if len(values) > limit:
            raise _err("payload_malformed", f"field 0x{tag:02x} appears {len(values)} times")
    if TAG_PUBLIC_KEY not in fields:
        raise _err("payload_malformed", "the payload has no public key")
    return fields


def decode(text: str) -> Payload:
    """Parse payload TEXT of either kind; ProvisioningError on any problem."""
    kind, body = _frame(text)
    fields = _fields(body)
    key = _public_key(fields[TAG_PUBLIC_KEY][0])
    hints = tuple(_text(TAG_BOOTSTRAP, v) for v in fields.get(TAG_BOOTSTRAP, []))
    if kind == KIND_OWNER:
        if TAG_ADDRESS in fields or TAG_SETUP_CODE in fields:
            raise _err("payload_malformed", "an owner payload carries no addresses or setup code")
        return OwnerPayload(owner=key, bootstrap=hints)
    addrs = tuple(_text(TAG_ADDRESS, v) for v in fields.get(TAG_ADDRESS, []))
    for a in addrs:
        if not a.startswith(("ws://", "wss://")):
            raise _err("payload_malformed", f"address {clean(a, 60)!r} is not a ws:// URL")
    code = fields.get(TAG_SETUP_CODE, [None])[0]
    if code is not None and len(code) != SETUP_CODE_BYTES:
        raise _err("payload_malformed", f"the setup code is not {SETUP_CODE_BYTES} bytes")
    return GatewayPayload(gateway=key, addrs=addrs, bootstrap=hints, setup_code=code)


def decode_owner(text: str) -> OwnerPayload:
    """Parse an owner payload; a gateway payload is refused with `payload_kind`."""
    p = decode(text)
    if not isinstance(p, OwnerPayload):
        raise _err(
            "payload_kind",
            "this is a gateway's setup QR, not an owner QR: show the QR of "
            "`streembit-peer owner-qr` to the gateway",
        )
    return p


def decode_gateway(text: str) -> GatewayPayload:
    """Parse a gateway payload; an owner payload is refused with `payload_kind`."""
    p = decode(text)
    if not isinstance(p, GatewayPayload):
        raise _err(
            "payload_kind",
            "this is an owner QR, not a gateway's setup QR (`streembit-gateway qr`)",
        )
    return p


def is_streembit(text: str) -> bool:
    """Whether TEXT claims to be a Streembit payload (prefix only; nothing is checked)."""
    return text.strip().upper().startswith(PREFIX)
