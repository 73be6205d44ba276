"""Config loading: typed frozen objects, and a clear error naming file, key and expectation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import LockSafety, P2pConfig, ThermostatSafety, load_config
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.things, "every example describes at least one Thing"
    assert cfg.state_dir.is_absolute()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.things[0].name = "x"  # type: ignore[misc]


def test_examples_cover_every_thing_type() -> None:
    types = {t.type for p in EXAMPLES for t in load_config(p).things}
    assert {"lock", "thermostat", "switch", "sensor"} <= types


def test_values_are_typed(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text(
        '[gateway]\nname="x"\nstate_dir="s"\n[gateway.http]\nport=0\n'
        '[[things]]\nname="door"\ntype="lock"\n[things.safety]\nauto_relock_s=5\n'
        '[[things]]\nname="heat"\ntype="thermostat"\n[things.safety]\nmax_setpoint_c=25\n'
    )
    cfg = load_config(f)
    assert cfg.state_dir == tmp_path / "s"
    assert cfg.http.port == 0
    lock, heat = cfg.things
    assert isinstance(lock.safety, LockSafety) and lock.safety.auto_relock_s == 5.0
    assert isinstance(heat.safety, ThermostatSafety) and heat.safety.max_setpoint_c == 25.0
    assert heat.title == "heat" and heat.driver == "sim"


BAD = [
    ("[gateway]\nname=3\n", "gateway.name", "string"),
    ("[gateway.http]\nport=70000\n", "gateway.http.port", "integer from 0 to 65535"),
    ("[gateway]\ncolour='red'\n", "gateway.colour", "no such setting"),
    ("[[things]]\nname='Door!'\ntype='lock'\n", "things[0].name", "lower-case"),
    ("[[things]]\nname='d'\ntype='toaster'\n", "things[0].type", "one of lock"),
    (
        "[[things]]\nname='d'\ntype='lock'\n[things.safety]\nauto_relock_s='soon'\n",
        "things[0].safety.auto_relock_s",
        "a number",
    ),
    (
        "[[things]]\nname='d'\ntype='lock'\n[things.safety]\nmax_setpoint_c=3\n",
        "things[0].safety.max_setpoint_c",
        "no such setting",
    ),
    (
        "[[things]]\nname='t'\ntype='thermostat'\n[things.safety]\nmin_setpoint_c=30\nmax_setpoint_c=10\n",
        "things[0].safety",
        "between min and max",
    ),
    (
        "[[things]]\nname='d'\ntype='lock'\n[[things]]\nname='d'\ntype='switch'\n",
        "things[1].name",
        "unique",
    ),
    (
        "[[things]]\nname='s'\ntype='sensor'\n[things.safety]\nkinds=['smell']\n",
        "things[0].safety.kinds",
        "temperature",
    ),
    ("things = 3\n", "things", "array of tables"),
    ("[gateway\n", "(syntax)", "valid TOML"),
]


@pytest.mark.parametrize(("text", "key", "expected"), BAD)
def test_bad_config_names_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert err.value.file == str(f)
    assert err.value.key.startswith(key)
    assert expected in err.value.expected
    assert str(f) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="existing config file"):
        load_config(tmp_path / "nope.toml")


def test_run_with_bad_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    state = tmp_path / "state"
    f.write_text(
        f'[gateway]\nstate_dir="{state}"\n[[things]]\nname="d"\ntype="lock"\n'
        "[things.safety]\njam_timeout_s=-1\n"
    )
    exe = Path(sys.executable).parent / "streembit-gateway"
    proc = subprocess.run(
        [str(exe), "run", "--config", str(f), "--create-key", "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert f"{f}: things[0].safety.jam_timeout_s: a number >= 0" in proc.stderr
    assert not state.exists(), "nothing may be created from a bad config"


def test_reset_button_settings(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text("[gateway.reset_button]\npin = 27\nhold_s = 5\n")
    assert load_config(f).reset_button.pin == 27
    f.write_text("[gateway.reset_button]\npin = 27\nhold_s = 0.1\n")
    with pytest.raises(ConfigError, match=r"gateway\.reset_button\.hold_s"):
        load_config(f)


def test_an_empty_p2p_table_means_the_defaults(tmp_path: Path) -> None:
    """P2P is off unless `enabled = true`, with or without a [gateway.p2p] table."""
    f = tmp_path / "gw.toml"
    f.write_text("[gateway.p2p]\n")
    assert load_config(f).p2p == P2pConfig() and not P2pConfig().enabled
    f.write_text("[gateway.p2p]\nws_port = 0\n")
    assert load_config(f).p2p.enabled is False
    f.write_text("[gateway.p2p]\nenabled = true\n")
    assert load_config(f).p2p.enabled is True


def test_p2p_rate_limit_is_settable(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text("[gateway.p2p]\nrate_per_s = 5\nburst = 8\nrecord_ttl_s = 600\n")
    p2p = load_config(f).p2p
    assert (p2p.rate_per_s, p2p.burst, p2p.record_ttl_s) == (5.0, 8, 600)
    assert isinstance(p2p.rate_per_s, float)
    for text, key, expected in (
        ("rate_per_s = 0", "rate_per_s", "a number > 0"),
        ("burst = 0", "burst", "an integer from 1 to"),
        ("record_ttl_s = 60", "record_ttl_s", "an integer from 120 to 604800"),
    ):
        f.write_text(f"[gateway.p2p]\n{text}\n")
        with pytest.raises(ConfigError) as err:
            load_config(f)
        assert err.value.key == f"gateway.p2p.{key}" and expected in err.value.expected


def test_signed_settings_come_from_the_model_not_the_name(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    thermostat = '[[things]]\nname = "t"\ntype = "thermostat"\n[things.safety]\n'
    f.write_text(thermostat + "frost_protection_c = -2\nsensor_min_c = -55\n")
    safety = load_config(f).things[0].safety
    assert isinstance(safety, ThermostatSafety) and safety.sensor_min_c == -55.0
    f.write_text(thermostat + "min_setpoint_c = -1\n")
    with pytest.raises(ConfigError, match=r"min_setpoint_c: a number >= 0"):
        load_config(f)
    f.write_text(thermostat + "control_interval_s = 0\n")
    with pytest.raises(ConfigError, match=r"control_interval_s: a number > 0"):
        load_config(f)


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ("bolt_speed = 1", "bolt_speed", "no such setting"),
        ('bolt_travel_s = "fast"', "bolt_travel_s", "a number"),
        ("bolt_travel_s = -1", "bolt_travel_s", "a number >= 0"),
    ],
)
def test_driver_settings_are_checked_at_load(
    tmp_path: Path, settings: str, key: str, expected: str
) -> None:
    f = tmp_path / "gw.toml"
    f.write_text(f'[[things]]\nname = "d"\ntype = "lock"\n[things.driver_settings]\n{settings}\n')
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert err.value.key == f"things[0].driver_settings.{key}"
    assert expected in err.value.expected and str(f) in str(err.value)


def test_nested_driver_tables_are_checked_at_load(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text(
        '[[things]]\nname = "d"\ntype = "switch"\ndriver = "gpio"\n'
        "[things.driver_settings]\noutput = { pin = 17, pullup = true }\n"
    )
    with pytest.raises(ConfigError, match=r"things\[0\]\.driver_settings\.output\.pullup"):
        load_config(f)
