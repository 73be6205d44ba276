# The companion frame codec and link session: one module for the ESP32 board (MicroPython) and
# the gateway's companion driver (CPython). Format and test vectors: docs/companion.md.
#
# Frame (all integers big-endian):
#   0    1  version  0x01
#   1    1  kind     ASCII: H hello, W welcome, R report, A ack (board -> gateway),
#                    C command, K keepalive (gateway -> board); H and W both ways
#   2    1  dir      ASCII: U (board -> gateway) or D (gateway -> board)
#   3    1  n        length of the device name, 1..32
#   4    n  device   ASCII device name
#   4+n  8  counter  sender's monotonic counter, 1..2**53-1
#   12+n 2  m        payload length, 0..MAX_PAYLOAD
#   14+n m  payload  UTF-8 JSON object
#   ..   32 mac      HMAC-SHA256(per-device key, every byte before it)
#
# Nothing here uses typing, f-strings with '=' or other syntax MicroPython lacks; mpy-cross checks.

import hashlib
import json

try:
    from os import urandom
except ImportError:  # pragma: no cover - every port we support has os.urandom
    urandom = None

VERSION = 1
UP = "U"  # board -> gateway
DOWN = "D"  # gateway -> board
KINDS = {UP: "HWRA", DOWN: "HWCK"}
MAC_LEN = 32
HEADER_MIN = 4
MAX_DEVICE = 32
MAX_PAYLOAD = 1024
MAX_COUNTER = (1 << 53) - 1  # exact in a JSON number and in a float
MAX_DEPTH = 8  # nested arrays/objects in a payload; real payloads use 2
MAX_NUMBER = 24  # characters of one number literal (a double needs ~25 only in odd spellings)
MAX_FRAME = HEADER_MIN + MAX_DEVICE + 8 + 2 + MAX_PAYLOAD + MAC_LEN
NONCE_BYTES = 16

# refusal codes (FrameError.code), stable: docs/companion.md section 4
TRUNCATED = "truncated"
OVERSIZED = "oversized"
BAD_VERSION = "bad_version"
BAD_KIND = "bad_kind"
BAD_DIRECTION = "bad_direction"
WRONG_DEVICE = "wrong_device"
BAD_LENGTH = "bad_length"
BAD_MAC = "bad_mac"
BAD_PAYLOAD = "bad_payload"
BAD_COUNTER = "bad_counter"
REPLAYED = "replayed"
NO_SESSION = "no_session"
BAD_NONCE = "bad_nonce"


class FrameError(Exception):
    def __init__(self, code, detail=""):
        super().__init__(code + (": " + detail if detail else ""))
        self.code = code


def _sha256(data):
    return hashlib.sha256(data).digest()


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104). Stock MicroPython has hashlib.sha256 but no hmac module, and its
    sha256 objects cannot be copied, so the two passes are written out."""
    if len(key) > 64:
        key = _sha256(key)
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]))
    inner.update(msg)
    outer = hashlib.sha256(bytes([b ^ 0x5C for b in key]))
    outer.update(inner.digest())
    return outer.digest()


def same(a, b):
    """Constant-time comparison of two byte strings."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


def dumps(obj):
    try:
        return json.dumps(obj, separators=(",", ":")).encode()
    except TypeError:  # older MicroPython: no separators argument
        return json.dumps(obj).encode()


def encode(key, kind, direction, device, counter, payload):
    """One sealed frame. PAYLOAD is the JSON text (bytes) exactly as it is sent."""
    dev = device.encode() if isinstance(device, str) else bytes(device)
    if not 1 <= len(dev) <= MAX_DEVICE:
        raise FrameError(WRONG_DEVICE, "device name length")
    if len(kind) != 1 or kind not in KINDS.get(direction, ""):
        raise FrameError(BAD_KIND, kind)
    if not 1 <= counter <= MAX_COUNTER:
        raise FrameError(BAD_COUNTER, "counter out of range")
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(OVERSIZED, "payload")
    body = (
        bytes([VERSION, ord(kind), ord(direction), len(dev)])
        + dev
        + counter.to_bytes(8, "big")
        + len(payload).to_bytes(2, "big")
        + payload
    )
    return body + hmac_sha256(key, body)


def decode(key, direction, device, frame):
    """Check FRAME (sent in DIRECTION by or to DEVICE) and return (kind, counter, payload_bytes).

    Raises FrameError; every check runs before the payload is parsed. The MAC is checked before
    anything that depends on the sender (counter, payload)."""
    n = len(frame)
    if n > MAX_FRAME:
        raise FrameError(OVERSIZED, str(n) + " bytes")
    if n < HEADER_MIN + 1 + 8 + 2 + MAC_LEN:
        raise FrameError(TRUNCATED, str(n) + " bytes")
    if frame[0] != VERSION:
        raise FrameError(BAD_VERSION, str(frame[0]))
    kind = chr(frame[1])
    if chr(frame[2]) != direction:
        raise FrameError(BAD_DIRECTION, chr(frame[2]))
    if kind not in KINDS[direction]:
        raise FrameError(BAD_KIND, kind)
    dlen = frame[3]
    if not 1 <= dlen <= MAX_DEVICE:
        raise FrameError(BAD_LENGTH, "device name length")
    pos = HEADER_MIN + dlen
    if n < pos + 10 + MAC_LEN:
        raise FrameError(TRUNCATED, str(n) + " bytes")
    m = int.from_bytes(frame[pos + 8 : pos + 10], "big")
    end = pos + 10 + m
    if m > MAX_PAYLOAD:
        raise FrameError(OVERSIZED, "payload")
    if n < end + MAC_LEN:
        raise FrameError(TRUNCATED, str(n) + " bytes")
    if n > end + MAC_LEN:
        raise FrameError(BAD_LENGTH, "trailing bytes")
    want = device.encode() if isinstance(device, str) else bytes(device)
    if bytes(frame[HEADER_MIN:pos]) != want:
        raise FrameError(WRONG_DEVICE)
    if not same(hmac_sha256(key, bytes(frame[:end])), bytes(frame[end:])):
        raise FrameError(BAD_MAC)
    counter = int.from_bytes(frame[pos : pos + 8], "big")
    if not 1 <= counter <= MAX_COUNTER:
        raise FrameError(BAD_COUNTER, "counter out of range")
    return kind, counter, bytes(frame[pos + 10 : end])


_SURR = b"89abcdefABCDEF"  # \uD8xx..\uDFxx are surrogates


def _scan(data):
    """Refuse, before json.loads, what it would choke on or read differently on the two
    interpreters: nesting beyond MAX_DEPTH (CPython raises RecursionError at ~1000, MicroPython
    a RuntimeError), number literals beyond MAX_NUMBER characters, NaN/Infinity, surrogate
    escapes (\\ud800 is not text) and a member name repeated in one object (compared as sent).
    One pass over the bytes; allocates only the per-object key lists."""
    depth = 0
    keys = []  # one entry per open container: the names seen (a list) or None for an array
    in_str = False
    esc = False
    start = 0
    last = None  # the last string closed, as raw bytes
    num = 0
    n = len(data)
    for i in range(n):
        c = data[i]
        if in_str:
            if esc:
                esc = False
                if c == 117 and i + 2 < n and data[i + 1] in b"dD" and data[i + 2] in _SURR:
                    raise FrameError(BAD_PAYLOAD, "surrogate escape")
            elif c == 92:  # backslash
                esc = True
            elif c == 34:  # closing quote
                in_str = False
                last = data[start:i]
            continue
        if c == 34:
            in_str = True
            start = i + 1
            num = 0
            continue
        if c in b"0123456789+-.eE":
            num += 1
            if num > MAX_NUMBER:
                raise FrameError(BAD_PAYLOAD, "number too long")
            continue
        num = 0
        if c == 91 or c == 123:  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                raise FrameError(BAD_PAYLOAD, "nested too deep")
            keys.append([] if c == 123 else None)
        elif c == 93 or c == 125:  # ] }
            if keys:
                keys.pop()
            depth -= 1
        elif c == 58:  # ':' ends a member name
            names = keys[-1] if keys else None
            if names is not None and last is not None:
                if last in names:
                    raise FrameError(BAD_PAYLOAD, "duplicate member name")
                names.append(last)
        elif c == 78 or c == 73:  # N(aN), I(nfinity)
            raise FrameError(BAD_PAYLOAD, "not a finite number")


def _finite(obj):
    """Refuse a number that decoded to infinity (1e400); depth is already bounded."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, float) and (x != x or x - x != 0.0):
            raise FrameError(BAD_PAYLOAD, "not a finite number")


def parse(payload):
    """The JSON object of a checked payload (an empty payload is {})."""
    if not payload:
        return {}
    _scan(payload)
    try:
        obj = json.loads(payload.decode())
    except Exception as exc:  # ValueError, UnicodeError, MicroPython's RuntimeError, ...
        raise FrameError(BAD_PAYLOAD, "not JSON: " + str(exc)[:60])
    if not isinstance(obj, dict):
        raise FrameError(BAD_PAYLOAD, "not a JSON object")
    _finite(obj)
    return obj


def _hex(data):
    return "".join("%02x" % b for b in data)


class Session:
    """One end of the authenticated link to one device.

    `me` is the direction of the frames this end sends (UP on the board, DOWN on the gateway).
    `counter` has `next()` (a persistent, strictly increasing counter: counter.py). The floor of
    the peer's counter is learnt by a challenge: this end sends H with a fresh nonce, the peer
    answers W echoing it; W's counter becomes the floor. Until then only H and W are accepted.
    Every later frame must carry a counter above the floor, which then moves up to it.
    """

    def __init__(self, key, device, me, counter, rand=None):
        if me not in (UP, DOWN):
            raise ValueError("me must be UP or DOWN")
        self.key = key
        self.device = device
        self.me = me
        self.peer = DOWN if me == UP else UP
        self.counter = counter
        self.rand = rand or urandom
        self.floor = None  # highest accepted peer counter; None until a W proves freshness
        self.pending = None  # nonce (hex) of our outstanding H

    @property
    def ready(self):
        return self.floor is not None

    def reset(self):
        """Forget the peer's floor (e.g. the key changed); the next H/W pair sets it again."""
        self.floor = None
        self.pending = None

    def seal(self, kind, obj):
        return encode(self.key, kind, self.me, self.device, self.counter.next(), dumps(obj))

    def hello(self, extra=None):
        self.pending = _hex(self.rand(NONCE_BYTES))
        obj = {"n": self.pending}
        if extra:
            for k in extra:
                obj[k] = extra[k]
        return self.seal("H", obj)

    def welcome(self, nonce):
        return self.seal("W", {"n": nonce})

    def open(self, frame):
        """Check a frame from the peer; returns (kind, payload object). Raises FrameError only:
        anything else a hostile frame could provoke is turned into BAD_PAYLOAD."""
        try:
            return self._open(frame)
        except FrameError:
            raise
        except Exception as exc:
            raise FrameError(BAD_PAYLOAD, type(exc).__name__)

    def _open(self, frame):
        kind, counter, payload = decode(self.key, self.peer, self.device, frame)
        if self.floor is not None and counter <= self.floor:
            raise FrameError(REPLAYED, "counter %d <= %d" % (counter, self.floor))
        obj = parse(payload)
        if kind == "W":
            nonce = obj.get("n")
            if self.pending is None or not isinstance(nonce, str) or nonce != self.pending:
                raise FrameError(BAD_NONCE, "welcome does not answer our hello")
            self.pending = None
            self.floor = counter
        elif kind == "H":
            if not isinstance(obj.get("n"), str) or len(obj["n"]) != 2 * NONCE_BYTES:
                raise FrameError(BAD_PAYLOAD, "hello without a nonce")
            if self.floor is not None:
                self.floor = counter
        elif self.floor is None:
            raise FrameError(NO_SESSION, "no welcome yet")
        else:
            self.floor = counter
        return kind, obj
