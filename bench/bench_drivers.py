"""Driver latency through the gateway on each backend's test double, and the thermostat's
reaction time to a temperature step.

    .venv/bin/python bench/bench_drivers.py            # 200 operations per backend
    .venv/bin/python bench/bench_drivers.py -n 1000 --json

For each backend (sim, gpio, onewire, serial line protocol, serial Modbus RTU, ble) a real
Gateway runs one Thing on the test double (tests/driver_rigs.py: mock pins, a sysfs tree, a fake
board or bus on a pty, a fake BlueZ on a private dbus-daemon):
- read:  `driver.read()` of the measured channel (temperature; gpio: the door contact), the
         call a Thing makes on every poll and control step;
- write: `write_property("on")` on a switch Thing (the Thing's safety logic plus the driver
         write, acknowledged: a relay pin set, an `OK` line, a Modbus echo, a GATT write with
         response);
- step:  a thermostat at 20 °C target with control_interval_s = 0.5: the simulated room drops
         from 21 °C to 17 °C; the time until the heater output is physically on (and back off
         after a step to 23 °C). The control loop samples every control_interval_s, so the
         expected figure is about half of it on average, at most one interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import Gateway
from gateway.config.model import GatewayConfig, HttpConfig
from tests.driver_rigs import (
    NAME,
    BleRig,
    GpioRig,
    OneWireRig,
    Rig,
    SerialLineRig,
    SerialModbusRig,
    SimRig,
)

RIGS: list[tuple[str, type[Rig]]] = [
    ("sim", SimRig),
    ("gpio", GpioRig),
    ("onewire", OneWireRig),
    ("serial-line", SerialLineRig),
    ("serial-modbus", SerialModbusRig),
    ("ble", BleRig),
]
CONTROL_S = 0.5


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def running(rig: Rig, thing_type: str, tmp: Path, **safety: Any) -> Gateway:
    await rig.open(thing_type)
    tc, inject = rig.config(thing_type)
    if safety:
        import dataclasses

        tc = dataclasses.replace(tc, safety=dataclasses.replace(tc.safety, **safety))
    cfg = GatewayConfig("bench", tmp / f"state-{thing_type}", http=HttpConfig(port=0),
                        things=(tc,))
    gw = await Gateway.create(cfg, create_key=True, inject={tc.name: inject})
    rig.gw = gw
    await gw.start()
    return gw


async def bench_rig(label: str, cls: type[Rig], n: int, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": label}
    # read
    thing_type = "sensor" if "sensor" in cls.types else cls.types[0]
    rig = cls(tmp / f"{label}-read")
    (tmp / f"{label}-read").mkdir()
    gw = await running(rig, thing_type, tmp / f"{label}-read")
    channel = "door" if thing_type == "lock" else "temperature"
    if label == "gpio":
        channel = "contact"
    driver = gw.things[NAME[thing_type]].driver
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await driver.read(channel)
        times.append((time.perf_counter() - t) * 1000)
    out["read_ms"] = {"p50": pct(times, 50), "p99": pct(times, 99), "channel": channel}
    await gw.stop()
    await rig.close()
    # write
    if "switch" in cls.types:
        rig = cls(tmp / f"{label}-write")
        (tmp / f"{label}-write").mkdir()
        gw = await running(rig, "switch", tmp / f"{label}-write")
        thing = gw.things[NAME["switch"]]
        times = []
        for i in range(n):
            t = time.perf_counter()
            await thing.write_property("on", i % 2 == 0, "bench")
            times.append((time.perf_counter() - t) * 1000)
        assert rig.output_on() is ((n - 1) % 2 == 0)
        out["write_ms"] = {"p50": pct(times, 50), "p99": pct(times, 99)}
        await gw.stop()
        await rig.close()
    # thermostat step
    if "thermostat" in cls.types:
        rig = cls(tmp / f"{label}-step")
        (tmp / f"{label}-step").mkdir()
        gw = await running(rig, "thermostat", tmp / f"{label}-step",
                           control_interval_s=CONTROL_S)
        steps = []
        for _ in range(8):
            for temp, want in ((17.0, True), (23.0, False)):
                await asyncio.sleep(random.uniform(0.0, CONTROL_S))  # any phase of the loop
                rig.set_temperature(temp)
                t = time.perf_counter()
                while rig.heater_on() is not want:
                    await asyncio.sleep(0.002)
                    if time.perf_counter() - t > 10:
                        raise RuntimeError(f"{label}: heater never turned {want}")
                steps.append((time.perf_counter() - t) * 1000)
        out["step_ms"] = {"mean": statistics.mean(steps), "max": max(steps),
                          "control_interval_ms": CONTROL_S * 1000}
        await gw.stop()
        await rig.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="operations per measurement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, cls in RIGS:
            results.append(await bench_rig(label, cls, args.n, Path(tmp)))
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{'backend':<14} {'read p50/p99 ms':<22} {'write p50/p99 ms':<22} step mean/max ms")
    for r in results:
        rd = r["read_ms"]
        wr = r.get("write_ms")
        st = r.get("step_ms")
        print(
            f"{r['backend']:<14} {rd['p50']:>7.3f} / {rd['p99']:<8.3f}    "
            + (f"{wr['p50']:>7.3f} / {wr['p99']:<8.3f}    " if wr else f"{'-':<22}")
            + (f"{st['mean']:>6.0f} / {st['max']:.0f}" if st else "-")
        )


if __name__ == "__main__":
    asyncio.run(main())
