"""Typed settings from TOML tables, driven by frozen dataclasses: the one reader of the gateway's
configuration (`gateway.config`) and of every driver's `[things.driver_settings]`.

A field's type says what its key takes: bool, int, float, str, Path, `X | None`, a union of
those, `tuple[X, ...]` (a TOML array), `Mapping[str, X]` (a table of free keys) or a nested
dataclass (a table). Its dataclass default is the default. Its metadata, made with `doc(...)`
(or `setting(...)`), says the rest, for the reader and the generated reference (docs/config.md):

    @dataclass(frozen=True)
    class LockSafety:
        auto_relock_s: float = setting(30.0, "relock after an unlock", min=0, unit="s")
        door: str = field(metadata=doc("required: no default"))

    Reader(fail).read(LockSafety, table, "things[0].safety")

Every mistake is `fail(key, expected)` with the dotted key (``things[0].safety.auto_relock_s``),
and a key no field has is refused (typos, settings of another backend).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from device_drivers.errors import DriverConfigError

T = TypeVar("T")
Fail = Callable[[str, str], Exception]
Check = Callable[[Any], "str | None"]
_NUMBER_WORDS = {int: "an integer", float: "a number"}


def doc(
    text: str,
    *,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    unit: str = "",
    choices: tuple[Any, ...] = (),
    expect: str = "",
    check: Check | None = None,
    parse: Callable[[Any], Any] | None = None,
    shown: str = "",
    blank: bool = False,
    optional: bool = False,
    toml: bool = True,
) -> dict[str, Any]:
    """Field metadata. TEXT: the meaning (one line of Markdown). MIN/MAX: inclusive bounds of a
    number, or of a list's length; ABOVE: an exclusive lower bound; UNIT for the docs; CHOICES:
    the allowed values (of the list's items for a list); EXPECT: the expectation in errors
    instead of the one the type gives; CHECK(value) -> None or an expectation, after conversion;
    PARSE(raw) -> value, instead of the conversion by type (ValueError: refused); SHOWN: the
    default as the docs say it; BLANK: an empty string is allowed; OPTIONAL: absent although the
    dataclass has no default (the caller fills it in); TOML=False: not read from the file."""
    return {
        "doc": text,
        "min": min,
        "max": max,
        "above": above,
        "unit": unit,
        "choices": choices,
        "expect": expect,
        "check": check,
        "parse": parse,
        "shown": shown,
        "blank": blank,
        "optional": optional,
        "toml": toml,
    }


def setting(default: T, text: str, **rules: Any) -> T:
    """The one-line form of `field(default=DEFAULT, metadata=doc(TEXT, **RULES))`."""
    return dataclasses.field(default=default, metadata=doc(text, **rules))


class _Bad(Exception):
    """A value of the wrong shape; the caller names the key and the expectation."""


def _fmt(num: float) -> str:
    return f"{num:g}" if isinstance(num, float) else str(num)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def members(tp: Any) -> list[Any]:
    """The non-None members of a union (or [TP])."""
    return [a for a in get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]


def expectation(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a key of type TP with metadata META takes, as errors say it."""
    if meta.get("expect"):
        return str(meta["expect"])
    choices = meta.get("choices") or ()
    alternatives = members(tp)
    if len(alternatives) > 1:
        return " or ".join(expectation(m, meta) for m in alternatives)
    tp = alternatives[0]
    origin = get_origin(tp)
    if choices and origin is not tuple:
        return "one of " + ", ".join(str(c) for c in choices)
    lo, hi, above = meta.get("min"), meta.get("max"), meta.get("above")
    if tp is bool:
        return "true or false"
    if tp in (int, float):
        word = _NUMBER_WORDS[tp]
        if lo is not None and hi is not None:
            return f"{word} from {_fmt(lo)} to {_fmt(hi)}"
        if above is not None:
            return f"{word} > {_fmt(above)}" + (f" and <= {_fmt(hi)}" if hi is not None else "")
        if lo is not None:
            return f"{word} >= {_fmt(lo)}"
        return word
    if tp is str:
        return "a string" if meta.get("blank") else "a non-empty string"
    if tp is Path:
        return "a path"
    if origin is tuple:
        item = expectation(get_args(tp)[0], {"choices": choices})
        return f"a {'non-empty ' if lo else ''}list, each {item}"
    if origin is Mapping or origin is dict:
        return f"a table, each value {expectation(get_args(tp)[1], {})}"
    return "a table"


def _fits(tp: Any, raw: object) -> bool:
    """True when RAW has the TOML shape of TP (which member of a union to read it as)."""
    origin = get_origin(tp)
    if tp is bool:
        return isinstance(raw, bool)
    if tp is int:
        return isinstance(raw, int) and not isinstance(raw, bool)
    if tp is float:
        return isinstance(raw, (int, float)) and not isinstance(raw, bool)
    if tp in (str, Path):
        return isinstance(raw, str)
    if origin is tuple:
        return isinstance(raw, list)
    return isinstance(raw, Mapping)


class Reader:
    """Reads dataclasses from TOML tables; FAIL(key, expected) makes the caller's error.
    UNKNOWN is how a key no field has is called ("no such setting")."""

    def __init__(self, fail: Fail, unknown: str = "no such setting") -> None:
        self.fail = fail
        self.unknown_text = unknown

    def read(self, cls: type[T], data: object, path: str = "", **given: Any) -> T:
        """CLS from the table DATA at PATH; GIVEN: fields the caller sets (and the file not)."""
        return cls(**self.values(cls, data, path, skip=tuple(given)), **given)

    def values(
        self, cls: type[Any], data: object, path: str = "", skip: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The fields of CLS that DATA sets, converted and checked (defaults left out)."""
        if not isinstance(data, Mapping):
            raise self.fail(path or "(file)", "a table")
        fields = toml_fields(cls)
        self.refuse_unknown(data, set(fields) | set(skip), path)
        hints = get_type_hints(cls)
        out: dict[str, Any] = {}
        for name, f in fields.items():
            if name in skip:
                continue
            key = f"{path}.{name}" if path else name
            if name not in data:
                if _required(f):
                    raise self.fail(key, f"required: {expectation(hints[name], f.metadata)}")
                continue
            out[name] = self.value(hints[name], data[name], key, f.metadata)
        return out

    def refuse_unknown(self, data: Mapping[str, Any], known: set[str], path: str) -> None:
        for k in data:
            if k not in known:
                key = f"{path}.{k}" if path else str(k)
                raise self.fail(key, f"{self.unknown_text} (known: {', '.join(sorted(known))})")

    def value(self, tp: Any, raw: object, key: str, meta: Mapping[str, Any]) -> Any:
        """RAW as type TP (metadata META), or FAIL naming KEY."""
        parse = meta.get("parse")
        try:
            val = parse(raw) if parse is not None else self._convert(tp, raw, key, meta)
        except (_Bad, ValueError) as exc:
            detail = f" ({exc})" if isinstance(exc, ValueError) and str(exc) else ""
            raise self.fail(key, expectation(tp, meta) + detail) from None
        check = meta.get("check")
        problem = check(val) if check is not None else None
        if problem:
            raise self.fail(key, problem)
        return val

    def _convert(self, tp: Any, raw: object, key: str, meta: Mapping[str, Any]) -> Any:
        alternatives = members(tp)
        if len(alternatives) > 1:
            for member in alternatives:
                if _fits(member, raw):
                    return self._convert(member, raw, key, meta)
            raise _Bad
        tp = alternatives[0]
        if not _fits(tp, raw):
            raise _Bad
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.read(tp, raw, key)
        if isinstance(raw, Mapping):  # Mapping[str, X]: a table of free keys
            item_tp = get_args(tp)[1]
            if item_tp is Any:
                return types.MappingProxyType(dict(raw))
            return types.MappingProxyType(
                {str(k): self.value(item_tp, v, f"{key}.{k}", {}) for k, v in raw.items()}
            )
        if isinstance(raw, list):  # tuple[X, ...]
            lo, hi = meta.get("min"), meta.get("max")
            if (lo is not None and len(raw) < lo) or (hi is not None and len(raw) > hi):
                raise _Bad
            item_meta = {"choices": meta.get("choices") or ()}
            return tuple(self._convert(get_args(tp)[0], item, key, item_meta) for item in raw)
        return _scalar(tp, raw, meta)


def _scalar(tp: Any, raw: Any, meta: Mapping[str, Any]) -> Any:
    val: Any = raw
    if tp is float:
        val = float(raw)
        if not math.isfinite(val):
            raise _Bad
    if tp in (str, Path) and not meta.get("blank") and not val.strip():
        raise _Bad
    if tp in (int, float):
        lo, hi, above = meta.get("min"), meta.get("max"), meta.get("above")
        if (lo is not None and val < lo) or (hi is not None and val > hi):
            raise _Bad
        if above is not None and val <= above:
            raise _Bad
    choices = meta.get("choices") or ()
    if choices and val not in choices:
        raise _Bad
    return Path(val) if tp is Path else val


def _required(f: dataclasses.Field[Any]) -> bool:
    no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return no_default and not f.metadata.get("optional", False)


def toml_fields(cls: type[Any]) -> dict[str, dataclasses.Field[Any]]:
    """The fields of the dataclass CLS that a file sets, by name."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("toml", True)}


def driver_reader(thing: str, backend: str) -> Reader:
    """The Reader of a driver's settings: errors name the Thing and the setting."""

    def fail(key: str, expected: str) -> DriverConfigError:
        return DriverConfigError(f"thing {thing!r}: driver setting {key!r}: {expected}")

    return Reader(fail, f"unknown {backend} setting")
