# ruff: noqa  (runs under MicroPython too: written for both interpreters)
# The companion's logic, driven step by step against a simulated gateway: the same script runs
# under CPython and under the real MicroPython interpreter (WebAssembly port), which has no
# machine, network or sockets: those are the small fakes below. Prints one line
#   RESULT {"checks": N}
# and raises on the first failure. mp_heap.py measures what the companion allocates.
import json

import app
import board
import counter
import frames
import link

KEY = bytes(range(32))
DEVICE = "kitchen"
checks = [0]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    checks[0] += 1


class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    PULL_DOWN = 3
    pins = {}

    def __init__(self, number, mode=0, pull=None):
        self.number = number
        self.v = 0
        Pin.pins[number] = self

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = 1 if v else 0


class WDT:
    def __init__(self, timeout=0):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class Machine:
    Pin = Pin
    WDT = WDT


class FakeDS:
    temp = 21.5

    def __init__(self, ow):
        pass

    def scan(self):
        return [b"\x28\x01"]

    def convert_temp(self):
        pass

    def read_temp(self, rom):
        return FakeDS.temp


class OneWireMod:
    @staticmethod
    def OneWire(pin):
        return pin


class DSMod:
    DS18X20 = FakeDS


class MemFs:
    def __init__(self):
        self.files = {}
        self.writes = 0

    def read(self, path):
        return self.files.get(path)

    def write(self, path, text):
        self.files[path] = text
        self.writes += 1


class Clock:
    def __init__(self):
        self.t = 1000

    def __call__(self):
        return self.t


class FakeLink:
    def __init__(self):
        self.connected = False
        self.inbox = []
        self.sent = []
        self.fail = 0

    def connect(self):
        if self.fail:
            self.fail -= 1
            raise OSError("broker away")
        self.connected = True

    @property
    def up(self):
        return self.connected

    def send(self, frame, important=True):
        if not self.connected:
            raise link.LinkDown("down")
        self.sent.append(frame)

    def poll(self, timeout_ms):
        out, self.inbox = self.inbox, []
        return out

    def keepalive(self, now):
        pass

    def close(self):
        self.connected = False


class GwCounter:
    def __init__(self):
        self.v = 0

    def next(self):
        self.v += 1
        return self.v


def gw_receive(gw, lk):
    got = []
    for f in lk.sent:
        try:
            got.append(gw.open(f))
        except frames.FrameError as exc:
            got.append(("!", exc.code))
    lk.sent = []
    return got


def main():
    cfg = app.load_config(
        json.dumps(
            {
                "v": 1,
                "device": DEVICE,
                "gateway": "gw",
                "key": "".join("%02x" % b for b in KEY),
                "link": "serial",
                "report_ms": 1000,
                "link_timeout_ms": 5000,
                "channels": {
                    "relay": {"kind": "relay", "pin": 5, "active_low": True, "safe": False},
                    "temp": {"kind": "ds18b20", "pin": 4},
                    "door": {"kind": "input", "pin": 12, "pull": "up"},
                },
            }
        )
    )
    clock = Clock()
    fs = MemFs()
    ctr = counter.Counter("counter", 256, fs)
    lk = FakeLink()
    logs = []
    comp = app.Companion(
        cfg, Machine, lk, ctr, {"onewire": OneWireMod, "ds18x20": DSMod}, clock, logs.append
    )
    check(Pin.pins[5].v == 1, "relay (active low) off at boot")
    gw = frames.Session(KEY, DEVICE, frames.DOWN, GwCounter(), lambda n: b"\x05" * n)

    # link up: hello; the gateway answers and asks for its own welcome
    comp.step(0)
    got = gw_receive(gw, lk)
    check(got[0][0] == "H" and got[0][1]["ch"]["relay"] == "relay", "hello with channels")
    lk.inbox = [gw.welcome(got[0][1]["n"]), gw.hello()]
    comp.step(0)
    got = gw_receive(gw, lk)
    kinds = [k for k, _ in got]
    check("W" in kinds and gw.ready, "welcome after the handshake")
    clock.t += cfg["report_ms"]
    comp.step(0)
    report = [o for k, o in gw_receive(gw, lk) if k == "R"][0]
    check(report["v"]["temp"] == 21.5 and report["v"]["relay"] is False, "report values")

    # a command: relay on, acknowledged
    lk.inbox = [gw.seal("C", {"id": 7, "set": {"relay": True}})]
    comp.step(0)
    got = gw_receive(gw, lk)
    ack = [o for k, o in got if k == "A"][0]
    check(ack["ok"] is True and ack["v"]["relay"] is True and Pin.pins[5].v == 0, "relay on")
    # the same command id again (a retransmission): acknowledged, not executed twice
    lk.inbox = [gw.seal("C", {"id": 7, "set": {"relay": True}})]
    comp.step(0)
    check(comp.stats["commands"] == 1 and gw_receive(gw, lk)[0][1]["id"] == 7, "no redo")
    # a bad command: refused in the ack, outputs unchanged
    lk.inbox = [gw.seal("C", {"id": 8, "set": {"temp": True}})]
    comp.step(0)
    ack = [o for k, o in gw_receive(gw, lk) if k == "A"][0]
    check(ack["ok"] is False and Pin.pins[5].v == 0, "read-only channel refused")

    # forged, replayed, other-device, truncated and oversized frames: refused, nothing done
    good = gw.seal("C", {"id": 9, "set": {"relay": False}})
    forged = bytearray(good)
    forged[-1] ^= 1
    other = frames.encode(bytes(32), "C", frames.DOWN, "garage", 10**6, b'{"id":9}')
    lk.inbox = [bytes(forged), other, good[:30], good + bytes(2000)]
    comp.step(0)
    check(Pin.pins[5].v == 0 and comp.stats["refused"] == 4, "forgeries refused")
    lk.inbox = [good]
    comp.step(0)
    check(Pin.pins[5].v == 1, "the genuine frame works")
    lk.inbox = [good]  # replayed
    before = comp.stats["refused"]
    lk.inbox = [gw.seal("C", {"id": 10, "set": {"relay": True}})]
    comp.step(0)
    lk.inbox = [good]
    comp.step(0)
    check(comp.stats["refused"] == before + 1 and Pin.pins[5].v == 0, "replay refused")
    gw_receive(gw, lk)

    # a flood: beyond max_rx_per_s frames in one second are dropped unchecked
    lk.inbox = [b"x" * 40] * 80
    comp.step(0)
    check(comp.stats["dropped"] >= 80 - cfg["max_rx_per_s"], "flood dropped")

    # no valid frame for link_timeout_ms: outputs to the safe state
    clock.t += cfg["link_timeout_ms"] + 1
    comp.step(0)
    check(Pin.pins[5].v == 1 and comp.is_safe, "safe state after the link timeout")
    gw_receive(gw, lk)

    # the link drops; reconnects with capped, jittered backoff
    lk.close()
    lk.fail = 3
    delays = []
    for _ in range(4):
        comp.retry_at = clock.t
        comp.step(0)
        if not lk.up:
            delays.append(app.ticks_diff(comp.retry_at, clock.t))
    check(lk.up and len(delays) == 3, "reconnected after three failures")
    check(
        250 <= delays[0] <= 500 and 500 <= delays[1] <= 1000 and 1000 <= delays[2] <= 2000,
        "jittered backoff %r" % delays,
    )
    b = link.Backoff(500, 30000, app.rand)
    check(max(b.next_ms() for _ in range(40)) <= 30000, "backoff capped")

    # counter: reservation writes, monotonic across a reboot
    writes0 = fs.writes
    last = 0
    for _ in range(600):
        last = ctr.next()
    check(fs.writes - writes0 <= 3, "one flash write per 256 frames")
    ctr2 = counter.Counter("counter", 256, fs)
    check(ctr2.next() > last, "counter continues after a reboot")
    fs.files["counter.a"] = "garbage"  # a torn write: the other slot still holds
    check(counter.Counter("counter", 256, fs).next() > last, "torn slot survived")

    # serial line framing round trip, REPL noise ignored
    sp = link.LineSplitter()
    out = sp.feed(b">>> print(1)\r\n1\r\n" + link.encode_line(good) + b"junk")
    check(out == [good], "serial framing")

    print("RESULT " + json.dumps({"checks": checks[0]}))


if __name__ == "__main__":
    main()
