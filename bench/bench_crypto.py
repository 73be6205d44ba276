"""Cost of sealed messages (joserfc) against the floor of the raw primitives (cryptography).

Run: .venv/bin/python bench/bench_crypto.py [--n 2000]

A sealed message costs the sender one ephemeral key generation, one ECDH, one ES256 signature
and one AES-256-GCM encryption; the receiver one ECDH, one AES-256-GCM decryption and one ES256
verification. The floor below is the sum of those primitives measured here, in this run, with
`cryptography` (the same OpenSSL joserfc uses); the gap to it is JOSE encoding and Python.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwe, jws

from gateway.identity import KeyPair, generate_keypair
from gateway.messages import ReplayCache, open_sealed, seal
from gateway.messages.keys import private_key, public_key

PAYLOAD_BYTES = 200  # a typical sealed request's inner JWS is a few hundred bytes
WARMUP = 50  # first calls pay for imports, caches and branch predictors


def measure(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call wall times in microseconds."""
    for _ in range(WARMUP):
        fn()
    gc.collect()
    times = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        times.append((clock() - t0) / 1000)
    return times


def pct(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[int(q) - 1]


def row(name: str, times: list[float]) -> float:
    p50 = statistics.median(times)
    print(f"  {name:<34} p50 {p50:8.1f} us   p99 {pct(times, 99):8.1f} us")
    return p50


def primitives(n: int) -> dict[str, float]:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    data = os.urandom(PAYLOAD_BYTES)
    sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    aead = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, data, b"aad")
    print(f"raw primitives (cryptography, {PAYLOAD_BYTES}-byte payload):")
    return {
        "sign": row(
            "P-256 ECDSA sign", measure(lambda: key.sign(data, ec.ECDSA(hashes.SHA256())), n)
        ),
        "verify": row(
            "P-256 ECDSA verify",
            measure(lambda: pub.verify(sig, data, ec.ECDSA(hashes.SHA256())), n),
        ),
        "keygen": row(
            "P-256 key generation", measure(lambda: ec.generate_private_key(ec.SECP256R1()), n)
        ),
        "ecdh": row("P-256 ECDH", measure(lambda: key.exchange(ec.ECDH(), peer), n)),
        "enc": row("AES-256-GCM encrypt", measure(lambda: aead.encrypt(nonce, data, b"aad"), n)),
        "dec": row("AES-256-GCM decrypt", measure(lambda: aead.decrypt(nonce, sealed, b"aad"), n)),
    }


def sealed_messages(n: int) -> tuple[float, float, float]:
    client, gateway = generate_keypair(), generate_keypair()
    body = {"op": "writeproperty", "thing": "hall-thermostat", "name": "setpoint", "input": 21.5}
    reply = {"status": 200, "output": None, "re": "A" * 22}
    tokens = [
        seal(body, sender=client, recipient=gateway.public, typ="request")
        for _ in range(n + WARMUP)
    ]
    it = iter(tokens)
    cache = ReplayCache(max_entries=len(tokens) + 1)
    cycle_cache = ReplayCache(max_entries=n + WARMUP + 1)

    def cycle() -> None:
        req = open_sealed(
            seal(body, sender=client, recipient=gateway.public, typ="request"),
            recipient=gateway,
            replay=cycle_cache,
        )
        rep = seal(reply, sender=gateway, recipient=req.sender, typ="reply")
        open_sealed(rep, recipient=client, replay=None)

    print(f"sealed messages (joserfc, {len(tokens[0])}-byte request token):")
    s = row(
        "seal (sign + encrypt)",
        measure(lambda: seal(body, sender=client, recipient=gateway.public, typ="request"), n),
    )
    o = row(
        "open (decrypt + verify + checks)",
        measure(lambda: open_sealed(next(it), recipient=gateway, replay=cache), n),
    )
    c = row("request + reply (2 seals, 2 opens)", measure(cycle, n // 2))
    library_only(tokens[0], client, gateway, n)
    return s, o, c


def library_only(token: str, client: KeyPair, gateway: KeyPair, n: int) -> None:
    """The same nesting with joserfc calls alone: the cost of our checks is the difference."""
    jwe_reg = jwe.JWERegistry(algorithms=["ECDH-ES", "A256GCM"])
    jws_reg = jws.JWSRegistry(algorithms=["ES256"])
    plain = jwe.decrypt_compact(token, private_key(gateway), registry=jwe_reg).plaintext
    assert plain is not None
    header = {"alg": "ES256", "typ": "streembit-msg+jws", "jwk": client.public.jwk}
    payload = jws.extract_compact(plain).payload
    protected = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": gateway.id}

    def bare_seal() -> None:
        inner = jws.serialize_compact(header, payload, private_key(client), registry=jws_reg)
        jwe.encrypt_compact(protected, inner, public_key(gateway.public), registry=jwe_reg)

    def bare_open() -> None:
        obj = jwe.decrypt_compact(token, private_key(gateway), registry=jwe_reg)
        assert obj.plaintext is not None
        jws.deserialize_compact(obj.plaintext, public_key(client.public), registry=jws_reg)

    print("joserfc calls alone (no header/claim checks, sender key known):")
    row("bare seal", measure(bare_seal, n))
    row("bare open", measure(bare_open, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="timed calls per measurement")
    n = parser.parse_args().n
    prim = primitives(n)
    seal_floor = prim["keygen"] + prim["ecdh"] + prim["sign"] + prim["enc"]
    open_floor = prim["ecdh"] + prim["dec"] + prim["verify"]
    s, o, c = sealed_messages(n)
    floor = 2 * (seal_floor + open_floor)
    print("floor vs joserfc (p50):")
    print(f"  seal  floor {seal_floor:7.1f} us   joserfc {s:7.1f} us   x{s / seal_floor:.2f}")
    print(f"  open  floor {open_floor:7.1f} us   joserfc {o:7.1f} us   x{o / open_floor:.2f}")
    print(f"  request + reply  floor {floor / 1000:.3f} ms   joserfc {c / 1000:.3f} ms")


if __name__ == "__main__":
    main()
