"""Config loading: typed frozen objects, and a clear error naming file, key and expectation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import LockSafety, ThermostatSafety, load_config
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
