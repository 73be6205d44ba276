"""Typed reading of `driver_settings` tables, with errors that name the Thing and the setting.

    s = SettingsReader("front-door", "gpio", settings)
    factory = s.get("pin_factory", str, None)
    bolt = s.table("bolt")            # a nested table ([things.driver_settings.bolt]) or None
    pin = bolt.get("pin", (int, str)) # error: thing 'front-door': driver setting 'bolt.pin': ...
    s.done()                          # refuses the keys nobody asked for (typos)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from device_drivers.errors import DriverConfigError

_MISSING: Any = object()


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class SettingsReader:
    def __init__(
        self, thing: str, backend: str, data: Mapping[str, Any], path: str = ""
    ) -> None:
        self.thing = thing
        self.backend = backend
        self.data = data
        self.path = path
        self._used: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, expected: str) -> DriverConfigError:
        return DriverConfigError(
            f"thing {self.thing!r}: driver setting {self.key(key)!r}: {expected}"
        )

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        """The value of KEY, of KIND (int accepted for float; bool never counts as a number)."""
        self._used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.fail(key, f"required ({_kind_name(kind)}) for the {self.backend} driver")
            return default
        val = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if isinstance(val, bool) and bool not in kinds:
            raise self.fail(key, f"must be {_kind_name(kind)}")
        if not isinstance(val, kinds):
            raise self.fail(key, f"must be {_kind_name(kind)}")
        if isinstance(val, float) and not math.isfinite(val):
            raise self.fail(key, "must be finite")
        return val

    def number(
        self, key: str, default: float, lo: float = 0.0, hi: float = math.inf
    ) -> float:
        val: float = self.get(key, float, default)
        if not lo <= val <= hi:
            raise self.fail(key, f"must be from {lo} to {hi}" if hi < math.inf else f">= {lo}")
        return val

    def choice(self, key: str, options: tuple[str, ...], default: str | None = None) -> str:
        val: str = self.get(key, str, _MISSING if default is None else default)
        if val not in options:
            raise self.fail(key, f"must be one of {', '.join(options)} (got {val!r})")
        return val

    def table(self, key: str) -> SettingsReader | None:
        """The nested table KEY, or None when absent."""
        self._used.add(key)
        if key not in self.data:
            return None
        val = self.data[key]
        if not isinstance(val, Mapping):
            raise self.fail(key, "must be a table (e.g. { pin = 17 })")
        return SettingsReader(self.thing, self.backend, val, self.key(key))

    def done(self) -> None:
        """Refuse settings nobody read (typos, settings of another backend)."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            known = ", ".join(sorted(self._used)) or "none"
            raise self.fail(unknown[0], f"unknown {self.backend} setting (known here: {known})")
