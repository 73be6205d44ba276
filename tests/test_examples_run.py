"""Every example config starts for real and yields valid TDs: the simulated ones as they are,
the hardware recipes (gpio, serial, ble) on their test doubles (mock pins with the door closed,
a sysfs tree holding the named DS18B20, fake boards on ptys at the configured ports' place, a
fake BlueZ peripheral with the configured address)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from device_drivers.registry import check_drivers, create_driver
from device_drivers.serial import MODBUS_CHANNELS
from device_drivers.testing.bluez import FakeBluez, private_bus, system_bus
from device_drivers.testing.gpio import mock_factory
from device_drivers.testing.serial_device import CHANNELS, FakeController, FakeModbusBus
from device_drivers.testing.sysfs import SysfsTree
from gateway.config import GatewayConfig, ThingConfig, load_config
from gateway.things import build_thing
from gateway.wot import build_td, validate_td

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
HARDWARE = {"gpio", "onewire", "serial", "ble"}


class Bench:
    """Stands the test doubles in for the hardware an example config names."""

    def __init__(self, tmp: Path, stack: contextlib.AsyncExitStack) -> None:
        self.tmp, self.stack = tmp, stack
        self.tree = SysfsTree(tmp / "sys")
        self.ports: dict[str, Path] = {}

    async def prepare(self, cfg: GatewayConfig) -> list[tuple[ThingConfig, dict[str, Any], Any]]:
        out = []
        for tc in cfg.things:
            settings, inject = dict(tc.driver_settings), {}
            if tc.driver in ("gpio", "onewire"):
                settings.pop("pin_factory", None)
                inject["sysfs_root"] = self.tree.root
                if tc.driver == "gpio":
                    inject["pin_factory"] = factory = mock_factory()
                    for ch in ("door", "contact", "bolt_sensor"):
                        if isinstance(settings.get(ch), dict):
                            factory.pin(settings[ch]["pin"]).wire(False)  # closed
                source = settings.get("temperature", {})
                device = source.get("ds18b20") if isinstance(source, dict) else None
                if device or "ds18b20" in settings:
                    self.tree.add_ds18b20(device or settings["ds18b20"], celsius=20.0)
            elif tc.driver == "serial":
                settings["port"] = str(self._port(cfg, tc))
            elif tc.driver == "ble":
                if not hasattr(self, "bus"):
                    self.bus = await self.stack.enter_async_context(private_bus(self.tmp))
                    self.stack.enter_context(system_bus(self.bus))
                fake = await FakeBluez(tc.type, settings["address"]).start(self.bus)
                self.stack.push_async_callback(fake.stop)
            out.append((tc, settings, inject))
        return out

    def _port(self, cfg: GatewayConfig, tc: ThingConfig) -> Path:
        port = str(tc.driver_settings["port"])
        if port in self.ports:
            return self.ports[port]
        path = self.tmp / f"tty{len(self.ports)}"
        sharing = [t for t in cfg.things if t.driver_settings.get("port") == port]
        if tc.driver_settings.get("protocol") == "modbus":
            bus = FakeModbusBus(path)
        else:
            values: dict[str, bool | float] = {}
            names: dict[str, str] = {}
            for t in sharing:
                values.update(CHANNELS[t.type])
                names.update({v: k for k, v in dict(t.driver_settings.get("names", {})).items()})
            bus = FakeController(path, tc.type, values=values, names=names)
        bus.start()
        self.stack.callback(bus.stop)
        self.ports[port] = path
        assert set(MODBUS_CHANNELS)  # the modbus Things are served by the bus above
        return path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_example_things_start_and_describe_themselves(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    async with contextlib.AsyncExitStack() as stack:
        bench = Bench(tmp_path, stack)
        plan = await bench.prepare(cfg)
        drivers = [
            create_driver(tc.driver, tc.name, tc.type, settings, **inject)
            for tc, settings, inject in plan
        ]
        check_drivers(drivers)
        for (tc, _, _), driver in zip(plan, drivers, strict=True):
            thing = build_thing(tc, driver)
            await thing.start()
            try:
                assert await thing.read_property("fault") is None, tc.name
                td = build_td(
                    thing, gateway_id="gw-test", base_url="http://127.0.0.1:1", check=True
                )
                validate_td(td, require_op=True)
                for name in thing.properties:
                    if name != "fault":
                        await thing.read_property(name)
                    assert name in td["properties"]
            finally:
                await thing.stop()


def test_every_hardware_recipe_has_an_example() -> None:
    recipes = sorted(
        p.name
        for p in (Path(__file__).resolve().parents[1] / "hardware").iterdir()
        if p.is_dir() and not p.name.startswith(("_", "."))  # not __pycache__ of hardware.build
    )
    names = {p.stem for p in EXAMPLES}
    assert recipes and all(r in names for r in recipes), (recipes, names)
    for r in recipes:
        folder = Path(__file__).resolve().parents[1] / "hardware" / r
        assert (folder / "wiring.svg").read_text().lstrip().startswith("<svg")
        text = (folder / "README.md").read_text()
        for heading in ("## Pin map", "## Bill of materials", "## Safety"):
            assert heading in text, (r, heading)
    assert HARDWARE
