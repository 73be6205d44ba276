"""docs/config.md is generated from the configuration's dataclasses, and every key has a meaning."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from device_drivers.registry import BUILTIN_BACKENDS, driver_class
from device_drivers.settings import toml_fields
from gateway.config.docs import render
from gateway.config.load import SAFETY_TYPES
from gateway.config.model import GatewayConfig, ThingConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_committed_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/config.md is stale: python -m gateway.config.docs > docs/config.md"
    )


def _models() -> list[type[Any]]:
    out: list[type[Any]] = [GatewayConfig, ThingConfig, *SAFETY_TYPES.values()]
    for backend in BUILTIN_BACKENDS:
        out += driver_class(backend).settings_model.values()
    return out


def _tables(cls: type[Any], seen: set[type[Any]]) -> None:
    if cls in seen:
        return
    seen.add(cls)
    for tp in get_type_hints(cls).values():
        for member in (*getattr(tp, "__args__", ()), tp):
            if isinstance(member, type) and dataclasses.is_dataclass(member):
                _tables(member, seen)


@pytest.mark.parametrize("backend", BUILTIN_BACKENDS)
def test_every_builtin_backend_declares_its_settings(backend: str) -> None:
    assert driver_class(backend).settings_model


def test_every_key_has_a_meaning_and_appears_in_the_reference() -> None:
    text = DOC.read_text()
    seen: set[type[Any]] = set()
    for model in _models():
        _tables(model, seen)
    for cls in seen:
        hints = get_type_hints(cls)
        for name, f in toml_fields(cls).items():
            is_table = isinstance(hints[name], type) and dataclasses.is_dataclass(hints[name])
            assert is_table or f.metadata.get("doc"), f"{cls.__name__}.{name} has no doc"
            assert is_table or f"| `{name}` |" in text, name
    for key in ("record_ttl_s", "discovery_prefix", "rate_per_s", "burst", "hold_s"):
        assert f"| `{key}` |" in text
