"""Writes tests/vectors/companion.json: the frame format's test vectors (docs/companion.md).

    .venv/bin/python -m tests.companion_support.make_vectors

Deterministic: fixed keys, counters and nonces. test_companion_frames.py checks that the file
is what this script makes, and check_vectors.py checks every vector under CPython and MicroPython.
"""

import json
import sys
from pathlib import Path

from micropython_client import frames

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
DEVICE = "kitchen"
NONCE_BYTES = bytes.fromhex("00112233445566778899aabbccddeeff")
OUT = Path(__file__).resolve().parents[1] / "vectors" / "companion.json"


def frame(kind, direction, counter, payload, key=KEY, device=DEVICE):
    return frames.encode(key, kind, direction, device, counter, payload)


def main():
    U, D = frames.UP, frames.DOWN
    valid = []
    for name, kind, direction, counter, payload in [
        (
            "hello from the board",
            "H",
            U,
            1,
            b'{"n":"00112233445566778899aabbccddeeff","ch":{"relay":"relay","temp":"ds18b20"},"fw":"1.0"}',
        ),
        ("welcome from the gateway", "W", D, 7, b'{"n":"00112233445566778899aabbccddeeff"}'),
        ("report", "R", U, 2, b'{"v":{"relay":false,"temp":21.5}}'),
        (
            "report with a sensor fault",
            "R",
            U,
            3,
            b'{"v":{"relay":false},"e":{"temp":"no DS18B20 on the bus"}}',
        ),
        ("command", "C", D, 8, b'{"id":42,"set":{"relay":true}}'),
        ("acknowledgement", "A", U, 4, b'{"id":42,"ok":true,"v":{"relay":true,"temp":21.5}}'),
        ("keepalive (empty payload)", "K", D, 9, b""),
        ("large counter", "R", U, frames.MAX_COUNTER, b"{}"),
    ]:
        valid.append(
            {
                "name": name,
                "direction": direction,
                "kind": kind,
                "counter": counter,
                "payload": payload.decode(),
                "frame": frame(kind, direction, counter, payload).hex(),
            }
        )

    good = bytes.fromhex(valid[4]["frame"])  # the command, gateway -> board

    def flip(data, i):
        b = bytearray(data)
        b[i] ^= 0x01
        return bytes(b)

    n = 4 + len(DEVICE)
    invalid = [
        ("truncated header", good[:20], "truncated"),
        ("truncated MAC", good[:-1], "truncated"),
        ("trailing byte", good + b"\x00", "bad_length"),
        ("oversized frame", good + bytes(frames.MAX_FRAME), "oversized"),
        ("version 2", bytes([2]) + good[1:], "bad_version"),
        ("unknown kind", good[:1] + b"X" + good[2:], "bad_kind"),
        ("board-only kind from the gateway", good[:1] + b"R" + good[2:], "bad_kind"),
        (
            "reflected: an up frame where a down frame is due",
            bytes.fromhex(valid[3]["frame"]),
            "bad_direction",
        ),
        ("other device", frame("C", D, 8, b'{"id":1}', device="garage"), "wrong_device"),
        ("other device's key", frame("C", D, 8, b'{"id":1}', key=OTHER_KEY), "bad_mac"),
        ("payload bit flipped", flip(good, n + 12), "bad_mac"),
        ("counter bit flipped", flip(good, n + 7), "bad_mac"),
        ("MAC bit flipped", flip(good, len(good) - 1), "bad_mac"),
        ("payload length says more", good[: n + 8] + b"\x04\x00" + good[n + 10 :], "truncated"),
        ("not JSON", frame("C", D, 8, b"{nope"), "bad_payload"),
        ("JSON but not an object", frame("C", D, 8, b"[1,2]"), "bad_payload"),
    ]
    # counter zero with a valid MAC (a sender bug, or a forgery by someone with the key)
    body = bytes([1, ord("C"), ord("D"), len(DEVICE)]) + DEVICE.encode() + bytes(8) + b"\x00\x02{}"
    invalid.append(("counter zero", body + frames.hmac_sha256(KEY, body), "bad_counter"))
    invalid_out = [{"name": a, "direction": D, "frame": f.hex(), "error": e} for a, f, e in invalid]

    # a board-side session (me = U) whose hello nonce is NONCE_BYTES, fed gateway frames in order
    nonce = NONCE_BYTES.hex()
    seq = [
        (
            "command before any welcome",
            frame("C", D, 5, b'{"id":1,"set":{"relay":true}}'),
            "no_session",
        ),
        (
            "welcome answering another hello",
            frame("W", D, 6, b'{"n":"ffeeddccbbaa99887766554433221100"}'),
            "bad_nonce",
        ),
        ("welcome answering our hello", frame("W", D, 7, f'{{"n":"{nonce}"}}'.encode()), "W"),
        ("command", frame("C", D, 8, b'{"id":42,"set":{"relay":true}}'), "C"),
        (
            "the same command again (replayed)",
            frame("C", D, 8, b'{"id":42,"set":{"relay":true}}'),
            "replayed",
        ),
        ("an older counter", frame("K", D, 6, b""), "replayed"),
        ("a replayed welcome", frame("W", D, 7, f'{{"n":"{nonce}"}}'.encode()), "replayed"),
        ("keepalive", frame("K", D, 9, b""), "K"),
        ("a gap in the counter is fine", frame("K", D, 1000, b""), "K"),
        (
            "hello from the restarted gateway",
            frame("H", D, 1001, f'{{"n":"{"ab" * 16}"}}'.encode()),
            "H",
        ),
        (
            "welcome without a pending hello",
            frame("W", D, 1002, f'{{"n":"{nonce}"}}'.encode()),
            "bad_nonce",
        ),
    ]
    session = {
        "me": U,
        "device": DEVICE,
        "hello_nonce": nonce,
        "steps": [{"name": a, "frame": f.hex(), "expect": e} for a, f, e in seq],
    }
    doc = {
        "description": "Streembit companion frame vectors (docs/companion.md). Frames are hex. "
        "`valid`: decode with `key` for `device` in `direction` and expect kind, counter and "
        "payload (UTF-8 JSON text, exactly as sent). `invalid`: decoding in `direction` must "
        "fail with `error`. `session`: a board-side session (frames it sends are direction U) "
        "that has sent a hello with nonce `hello_nonce`; feed it `steps` in order: `expect` is "
        "the kind accepted or the refusal code.",
        "key": KEY.hex(),
        "other_key": OTHER_KEY.hex(),
        "device": DEVICE,
        "valid": valid,
        "invalid": invalid_out,
        "session": session,
    }
    text = json.dumps(doc, indent=1) + "\n"
    if "--check" in sys.argv:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
