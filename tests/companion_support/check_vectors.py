# ruff: noqa  (runs under MicroPython too: written for both interpreters)
# Checks tests/vectors/companion.json against micropython_client/frames.py. Runs unchanged under
# CPython (test_companion_frames.py) and under the MicroPython WebAssembly interpreter
# (test_companion_micropython.py): both must agree with the vectors, hence with each other.
#   python check_vectors.py VECTORS.json        (frames importable as `frames`)
import json

import frames


def unhex(text):
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


class FixedCounter:
    def __init__(self, start):
        self.value = start

    def next(self):
        self.value += 1
        return self.value


def check(path):
    with open(path) as fh:
        doc = json.load(fh)
    key = unhex(doc["key"])
    device = doc["device"]
    count = 0
    for v in doc["valid"]:
        raw = unhex(v["frame"])
        payload = v["payload"].encode()
        made = frames.encode(key, v["kind"], v["direction"], device, v["counter"], payload)
        if made != raw:
            raise AssertionError("encode differs: " + v["name"])
        kind, counter, got = frames.decode(key, v["direction"], device, raw)
        if (kind, counter, got) != (v["kind"], v["counter"], payload):
            raise AssertionError("decode differs: " + v["name"])
        frames.parse(got)
        count += 1
    for v in doc["invalid"]:
        try:
            frames.parse(frames.decode(key, v["direction"], device, unhex(v["frame"]))[2])
        except frames.FrameError as exc:
            if exc.code != v["error"]:
                raise AssertionError("%s: got %s, want %s" % (v["name"], exc.code, v["error"]))
        else:
            raise AssertionError("accepted: " + v["name"])
        count += 1
    s = doc["session"]
    nonce = unhex(s["hello_nonce"])
    session = frames.Session(key, s["device"], s["me"], FixedCounter(100), lambda n: nonce)
    session.hello()
    for step in s["steps"]:
        try:
            got = session.open(unhex(step["frame"]))[0]
        except frames.FrameError as exc:
            got = exc.code
        if got != step["expect"]:
            raise AssertionError("%s: got %s, want %s" % (step["name"], got, step["expect"]))
        count += 1
    # HMAC-SHA256 against RFC 4231 test case 2
    mac = frames.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    if "".join("%02x" % b for b in mac) != want:
        raise AssertionError("HMAC-SHA256 RFC 4231 case 2")
    return count + 1


if __name__ == "__main__":
    import sys

    args = getattr(sys, "argv", None)
    if not args:
        import mp_argv

        args = mp_argv.argv
    print("companion vectors ok: %d checks" % check(args[1]))
