"""The one bounded JSON decoding policy for input from peers, owners, boards and files.

`json.loads` alone is not total on hostile input: deep nesting raises RecursionError, an
integer of more than 4300 digits raises a ValueError that is not a JSONDecodeError, `1e400`
silently becomes infinity, NaN/Infinity are accepted, duplicate member names are silently
merged, and "\\ud800" yields a string that cannot be encoded back to UTF-8 (the audit log,
SQLite and every log line would then fail). `loads` refuses every one of these with a
`JsonInputError` whose `problem` says which bound was hit; each layer maps it to its own
refusal code (HTTP `bad_request`, sealed message `bad_format`, ACL `acl_malformed`, ...).

`check_tree` applies the same bounds (depth, numbers, strings) to an already decoded tree,
e.g. the result of `tomllib`, and names the path of the offending member.

The bounds are `JsonLimits`; the defaults suit request values and protocol headers. Decoding
cost is linear in the input: the size bound comes first, numbers are checked by length before
conversion, and the depth check walks the value without recursion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import StreembitError

__all__ = [
    "DEFAULT_LIMITS",
    "FILE_LIMITS",
    "JsonInputError",
    "JsonLimits",
    "check_tree",
    "loads",
    "loads_object",
]

# JsonInputError.problem values (stable)
TOO_LARGE: Final = "too_large"
NOT_UTF8: Final = "not_utf8"
SYNTAX: Final = "syntax"
TOO_DEEP: Final = "too_deep"
LONG_NUMBER: Final = "long_number"
NON_FINITE: Final = "non_finite"
DUPLICATE_KEY: Final = "duplicate_key"
BAD_STRING: Final = "bad_string"
NOT_OBJECT: Final = "not_object"


@dataclass(frozen=True)
class JsonLimits:
    """Bounds applied to one JSON document (or decoded tree)."""

    max_bytes: int = 64 * 1024  # UTF-8 bytes (characters when given text)
    max_depth: int = 32  # nested arrays/objects; a scalar is depth 0, [] is depth 1
    max_number_chars: int = 40  # characters of one number literal (a double needs ~25)
    max_int_bits: int = 64  # decoded integers must fit in a signed 64-bit integer
    duplicates: bool = False  # False: a repeated member name is refused


DEFAULT_LIMITS: Final = JsonLimits()
#: The gateway's own state files (pairings, setup code, run info, saved settings, broker
#: credentials): written by the gateway, but read back after crashes, restores and hand edits.
FILE_LIMITS: Final = JsonLimits(max_bytes=1 << 20, max_depth=16)


class JsonInputError(StreembitError, ValueError):
    """A JSON document (or decoded tree) broke the policy; `problem` names the bound.

    Also a ValueError, as `json.JSONDecodeError` is: readers of the gateway's own state files
    treat ValueError as "damaged file" and need no clause of their own."""

    code = "bad_json"

    def __init__(self, problem: str, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.problem = problem
        self.path = path


class _Refused(Exception):
    """Raised from inside the decoder's hooks; turned into JsonInputError by `loads`."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def _constant(name: str) -> Any:
    raise _Refused(NON_FINITE, f"{name} is not a JSON number")


def _hooks(limits: JsonLimits) -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    cap = limits.max_number_chars

    def parse_int(text: str) -> int:
        if len(text) > cap:
            raise _Refused(LONG_NUMBER, f"a number longer than {cap} characters")
        return int(text)

    def parse_float(text: str) -> float:
        if len(text) > cap:
            raise _Refused(LONG_NUMBER, f"a number longer than {cap} characters")
        value = float(text)
        if not math.isfinite(value):
            raise _Refused(NON_FINITE, f"{text} is out of the range of a double")
        return value

    return parse_int, parse_float


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Refused(DUPLICATE_KEY, f"duplicate member name {key[:40]!r}")
        obj[key] = value
    return obj


def _bad_string(text: str) -> bool:
    """True for a string that is not valid Unicode text (a lone surrogate from \\ud800)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_tree(value: Any, limits: JsonLimits = DEFAULT_LIMITS, *, what: str = "JSON") -> None:
    """Apply the depth, number and string bounds to a decoded tree; JsonInputError if broken.

    Containers are dicts and lists (tuples too); the walk is iterative, so any depth is safe.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if len(path) >= limits.max_depth:
                raise JsonInputError(
                    TOO_DEEP, f"{what}: nesting deeper than {limits.max_depth} levels", path
                )
            for key, child in node.items():
                if isinstance(key, str) and _bad_string(key):
                    raise JsonInputError(BAD_STRING, f"{what}: a member name is not text", path)
                stack.append((child, (*path, str(key))))
        elif isinstance(node, (list, tuple)):
            if len(path) >= limits.max_depth:
                raise JsonInputError(
                    TOO_DEEP, f"{what}: nesting deeper than {limits.max_depth} levels", path
                )
            stack.extend((child, (*path, i)) for i, child in enumerate(node))
        elif isinstance(node, str):
            if _bad_string(node):
                raise JsonInputError(BAD_STRING, f"{what}: a string is not valid text", path)
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int):
            if node.bit_length() >= limits.max_int_bits:
                raise JsonInputError(
                    LONG_NUMBER, f"{what}: an integer outside {limits.max_int_bits} bits", path
                )
        elif isinstance(node, float) and not math.isfinite(node):
            raise JsonInputError(NON_FINITE, f"{what}: a number is not finite", path)


def loads(
    data: bytes | bytearray | memoryview | str,
    limits: JsonLimits = DEFAULT_LIMITS,
    *,
    what: str = "JSON",
    pairs_hook: Callable[[list[tuple[str, Any]]], dict[str, Any]] | None = None,
) -> Any:
    """Decode one JSON document within LIMITS; JsonInputError on anything else.

    PAIRS_HOOK replaces the duplicate-refusing object hook (e.g. to report duplicates instead).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > limits.max_bytes:
            raise JsonInputError(TOO_LARGE, f"{what} is larger than {limits.max_bytes} bytes")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonInputError(NOT_UTF8, f"{what} is not UTF-8") from None
    elif isinstance(data, str):
        if len(data) > limits.max_bytes:
            raise JsonInputError(TOO_LARGE, f"{what} is larger than {limits.max_bytes} bytes")
        text = data
    else:
        raise JsonInputError(SYNTAX, f"{what}: not valid JSON (not text)")
    parse_int, parse_float = _hooks(limits)
    hook = pairs_hook or (_no_duplicates if not limits.duplicates else None)
    try:
        value = json.loads(
            text,
            object_pairs_hook=hook,
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=_constant,
        )
    except _Refused as exc:
        raise JsonInputError(exc.problem, f"{what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(
            SYNTAX, f"{what}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise JsonInputError(
            TOO_DEEP, f"{what}: nesting deeper than {limits.max_depth} levels"
        ) from None
    except (ValueError, TypeError) as exc:  # defensive: the decoder's other refusals
        raise JsonInputError(SYNTAX, f"{what}: not valid JSON ({type(exc).__name__})") from None
    check_tree(value, limits, what=what)
    return value


def loads_object(
    data: bytes | bytearray | memoryview | str,
    limits: JsonLimits = DEFAULT_LIMITS,
    *,
    what: str = "JSON",
) -> dict[str, Any]:
    """`loads`, and the document must be a JSON object."""
    value = loads(data, limits, what=what)
    if not isinstance(value, dict):
        raise JsonInputError(NOT_OBJECT, f"{what} is not a JSON object")
    return value
