"""Every example config starts for real on the simulated backend and yields valid TDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_drivers.registry import create_driver
from gateway.config import load_config
from gateway.things import build_thing
from gateway.wot import build_td, validate_td

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_example_things_start_and_describe_themselves(path: Path) -> None:
    cfg = load_config(path)
    for tc in cfg.things:
        driver = create_driver(tc.driver, tc.name, tc.type, tc.driver_settings)
        thing = build_thing(tc, driver)
        await thing.start()
        try:
            td = build_td(thing, gateway_id="gw-test", base_url="http://127.0.0.1:1", check=True)
            validate_td(td, require_op=True)
            for name in thing.properties:
                if name != "fault":
                    await thing.read_property(name)
                assert name in td["properties"]
        finally:
            await thing.stop()
