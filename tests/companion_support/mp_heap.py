# ruff: noqa  (runs under MicroPython too: written for both interpreters)
# What the companion allocates, under the real MicroPython interpreter (WebAssembly port):
# gc.mem_alloc() deltas with the collector disabled, so every byte allocated is counted and
# nothing is freed (this port's gc.collect() does not reclaim, so live-heap figures cannot be
# read from it; allocation totals are upper bounds of the live heap). Prints
#   HEAP {"imports": B, "start": B, "per_command": B, "per_report": B, "per_keepalive": B}
import gc
import json

gc.collect()
gc.disable()
H0 = gc.mem_alloc()
import app  # noqa: E402  (imports frames, counter, board, link)

H_IMPORTS = gc.mem_alloc()
import frames  # noqa: E402
import mp_logic as t  # noqa: E402  (the fakes: machine, link, clock, flash)

H_FAKES = gc.mem_alloc()


def measure():
    a0 = gc.mem_alloc()
    cfg = app.load_config(
        json.dumps(
            {
                "v": 1,
                "device": t.DEVICE,
                "gateway": "gw",
                "key": "00" * 32,
                "link": "serial",
                "channels": {
                    "relay": {"kind": "relay", "pin": 5},
                    "temp": {"kind": "ds18b20", "pin": 4},
                    "door": {"kind": "input", "pin": 12, "pull": "up"},
                },
            }
        )
    )
    clock = t.Clock()
    lk = t.FakeLink()
    comp = app.Companion(
        cfg,
        t.Machine,
        lk,
        t.counter.Counter("c", 256, t.MemFs()),
        {"onewire": t.OneWireMod, "ds18x20": t.DSMod},
        clock,
        lambda s: None,
    )
    comp.step(0)
    start = gc.mem_alloc() - a0
    gw = frames.Session(bytes(32), t.DEVICE, frames.DOWN, t.GwCounter(), lambda n: b"\x01" * n)
    hello = gw.open(lk.sent[0])[1]
    lk.sent = []
    lk.inbox = [gw.welcome(hello["n"]), gw.hello()]
    comp.step(0)
    t.gw_receive(gw, lk)
    cmds = [gw.seal("C", {"id": i, "set": {"relay": i % 2 == 0}}) for i in range(10)]
    keep = gw.seal("K", {})
    a0 = gc.mem_alloc()
    for c in cmds:
        lk.inbox = [c]
        comp.step(0)
    per_command = (gc.mem_alloc() - a0) // len(cmds)
    lk.sent = []
    a0 = gc.mem_alloc()
    for _ in range(10):
        comp.last_report = None
        comp.step(0)
    per_report = (gc.mem_alloc() - a0) // 10
    a0 = gc.mem_alloc()
    lk.inbox = [keep]
    comp.step(0)
    per_keepalive = gc.mem_alloc() - a0
    return start, per_command, per_report, per_keepalive


start, per_command, per_report, per_keepalive = measure()
print(
    "HEAP "
    + json.dumps(
        {
            "imports": H_IMPORTS - H0,
            "start": start,
            "per_command": per_command,
            "per_report": per_report,
            "per_keepalive": per_keepalive,
        }
    )
)
