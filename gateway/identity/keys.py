"""P-256 key pairs, PEM files and RFC 7638 thumbprints, on `cryptography` and `joserfc`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from gateway.b64 import b64url_decode, b64url_encode
from gateway.errors import IdentityError
from gateway.jsonsafe import JsonInputError, JsonLimits, loads
from gateway.storage import atomic_write_bytes

MAX_KEY_FILE = 16 * 1024  # a PEM key is < 1 KiB; refuse anything absurd
JWK_LIMITS = JsonLimits(max_bytes=MAX_KEY_FILE, max_depth=4)  # a JWK file: one flat object
ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # an id: base64url of a SHA-256 digest, no padding
PUB_SUFFIX = ".pub"


def is_id(text: str) -> bool:
    """True for a well-formed id (an RFC 7638 thumbprint: 43 base64url characters)."""
    return ID_RE.fullmatch(text) is not None


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public JWK: SHA-256 over the required members, sorted."""
    try:
        members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    except KeyError as exc:
        raise IdentityError(f"JWK lacks member {exc.args[0]!r}", code="bad_key") from None
    if members["kty"] != "EC" or members["crv"] != "P-256":
        raise IdentityError("only EC P-256 keys are accepted", code="bad_key")
    canon = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url_encode(hashlib.sha256(canon).digest())


@dataclass(frozen=True)
class PublicIdentity:
    """A public key and its id (thumbprint)."""

    key: ec.EllipticCurvePublicKey = field(repr=False, compare=False)
    jwk: dict[str, str] = field(repr=False, compare=False, hash=False)
    id: str

    @classmethod
    def from_key(cls, key: ec.EllipticCurvePublicKey) -> PublicIdentity:
        if not isinstance(key.curve, ec.SECP256R1):
            raise IdentityError(f"key is on {key.curve.name}, expected P-256", code="bad_key")
        nums = key.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(nums.x.to_bytes(32, "big")),
            "y": b64url_encode(nums.y.to_bytes(32, "big")),
        }
        return cls(key=key, jwk=jwk, id=thumbprint(jwk))

    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def compressed(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )

    def jose_key(self) -> ECKey:
        return ECKey.import_key(dict(self.jwk))


def public_from_jwk(jwk: Any) -> PublicIdentity:
    """Parse an untrusted public JWK (P-256 only); raises IdentityError."""
    if not isinstance(jwk, dict):
        raise IdentityError("public key must be a JWK object", code="bad_key")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk:
        raise IdentityError("public key must be an EC P-256 public JWK", code="bad_key")
    try:
        x = b64url_decode(str(jwk["x"]), "x")
        y = b64url_decode(str(jwk["y"]), "y")
        if len(x) != 32 or len(y) != 32:
            raise ValueError("coordinate length")
        nums = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        return PublicIdentity.from_key(nums.public_key())
    except (KeyError, ValueError, TypeError) as exc:
        raise IdentityError(f"invalid P-256 public key: {exc}", code="bad_key") from None


@dataclass(frozen=True)
class KeyPair:
    """A private P-256 key and its public identity."""

    private: ec.EllipticCurvePrivateKey = field(repr=False)
    public: PublicIdentity

    @property
    def id(self) -> str:
        return self.public.id

    def jose_key(self) -> ECKey:
        """The private key as a joserfc key (for signing and decrypting)."""
        return ECKey.import_key(self.private_pem())

    def private_pem(self, passphrase: bytes | None = None) -> bytes:
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
        )


def generate_keypair() -> KeyPair:
    priv = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(private=priv, public=PublicIdentity.from_key(priv.public_key()))


def _read_small(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise IdentityError(f"{path}: key file not found", code="no_key") from None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read key file: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise IdentityError(f"{path}: too large for a key file")
    return data


def write_keypair(path: Path, kp: KeyPair, passphrase: bytes | None = None) -> Path:
    """Write PATH (PKCS#8 PEM, mode 0600) and PATH.pub (SubjectPublicKeyInfo PEM)."""
    path = Path(path)
    atomic_write_bytes(path, kp.private_pem(passphrase), mode=0o600)
    pub = path.with_name(path.name + ".pub")
    atomic_write_bytes(pub, kp.public.pem(), mode=0o644)
    return pub


def _is_public(data: bytes) -> bool:
    text = data.strip()
    if text.startswith(b"{"):  # a JWK: public unless it has the private member "d"
        return b'"kty"' in text and b'"d"' not in text
    return b"-----BEGIN PUBLIC KEY-----" in text


def _is_private(data: bytes) -> bool:
    text = data.strip()
    if text.startswith(b"{"):
        return b'"kty"' in text and b'"d"' in text
    return b"PRIVATE KEY-----" in text


def _use_private(path: Path) -> str:
    """What to say when the public key file PATH was given for a private key."""
    if path.name.endswith(PUB_SUFFIX) and len(path.name) > len(PUB_SUFFIX):
        return f"use the private key file {path.with_name(path.name[: -len(PUB_SUFFIX)])}"
    return "use the private key file instead"


def load_keypair(path: Path, passphrase: bytes | None = None) -> KeyPair:
    """Load a PKCS#8 PEM private key; refuses files readable by group or others."""
    path = Path(path)
    data = _read_small(path)
    if _is_public(data):
        raise IdentityError(
            f"{path}: this is a public key; {_use_private(path)}",
            code="bad_key",
        )
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise IdentityError(
            f"{path}: private key is readable by others (mode {mode:o}); run: chmod 600 {path}",
            code="unsafe_permissions",
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise IdentityError(f"{path}: key is encrypted; a passphrase is needed") from None
    except ValueError:
        raise IdentityError(f"{path}: not a PEM private key (or wrong passphrase)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise IdentityError(f"{path}: not a P-256 private key", code="bad_key")
    return KeyPair(private=key, public=PublicIdentity.from_key(key.public_key()))


def load_public(path: Path) -> PublicIdentity:
    """Load a public key: SubjectPublicKeyInfo PEM, a JWK JSON file, or a private key's .pub."""
    path = Path(path)
    data = _read_small(path)
    if _is_private(data):
        raise IdentityError(
            f"{path}: this is a private key; give the public key file {path}{PUB_SUFFIX}",
            code="bad_key",
        )
    text = data.strip()
    if text.startswith(b"{"):
        try:
            jwk = loads(text, JWK_LIMITS, what=str(path))
        except JsonInputError as exc:
            raise IdentityError(f"{path}: not a JWK JSON file ({exc})", code="bad_key") from None
        try:
            return public_from_jwk(jwk)
        except IdentityError as exc:
            raise IdentityError(f"{path}: {exc}", code=exc.code) from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise IdentityError(f"{path}: not a PEM public key", code="bad_key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise IdentityError(f"{path}: not an EC public key", code="bad_key")
    try:
        return PublicIdentity.from_key(key)
    except IdentityError as exc:
        raise IdentityError(f"{path}: {exc}", code=exc.code) from None
