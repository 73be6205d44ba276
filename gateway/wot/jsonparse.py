"""Strict JSON parsing for Thing Descriptions, and JSON Pointer helpers.

`json.loads` silently keeps the last of two members with the same name; a TD with duplicate keys
(two properties or two security definitions of the same name) is invalid, so `loads_strict`
parses with an `object_pairs_hook` that remembers every object holding a duplicate and reports
each one as a `Problem` with the RFC 6901 JSON Pointer of the duplicated member.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import WotError
from gateway.jsonsafe import SYNTAX, JsonInputError, JsonLimits, loads

# A TD is bounded like every other input (gateway.jsonsafe); these bounds leave room for any
# real TD (the gateway's own are a few KiB, nesting below 12) and keep validation fast.
TD_LIMITS: Final = JsonLimits(max_bytes=256 * 1024, max_depth=32, duplicates=True)

__all__ = ["TD_LIMITS", "Problem", "loads_strict", "pointer"]


@dataclass(frozen=True, order=True)
class Problem:
    """One reason why a document is invalid: where (a JSON Pointer, "" is the root) and why."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '(root)'}: {self.message}"


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(parts: Iterable[str | int]) -> str:
    """The RFC 6901 JSON Pointer of a path given as keys and list indexes ("" for the root)."""
    return "".join("/" + _escape(part) for part in parts)


def loads_strict(text: str) -> tuple[Any, list[Problem]]:
    """Parse JSON text; return the value and one Problem per duplicated object member.

    A leading byte order mark is ignored. NaN, Infinity and -Infinity (accepted by `json.loads`,
    not by JSON) are refused, and so is anything beyond `TD_LIMITS` (size, depth, numbers).
    For duplicates the value keeps the last member, as `json.loads` does.
    Raises WotError if the text is not JSON at all.
    """
    # Objects that hold a duplicate, by id. The object itself is kept in the value so that its
    # id cannot be reused by a later object while parsing goes on.
    duplicates: dict[int, tuple[dict[str, Any], list[str]]] = {}

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        repeated: list[str] = []
        for key, value in pairs:
            if key in obj and key not in repeated:
                repeated.append(key)
            obj[key] = value
        if repeated:
            duplicates[id(obj)] = (obj, repeated)
        return obj

    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = loads(text, TD_LIMITS, what="the TD", pairs_hook=hook)
    except JsonInputError as exc:
        message = str(exc) if exc.problem == SYNTAX else f"not valid JSON: {exc}"
        raise WotError(message) from None

    problems: list[Problem] = []
    if duplicates:
        # Walk the value to find where each object with duplicates sits. Objects that were
        # themselves overwritten by a later duplicate are no longer reachable, and the
        # duplicate that dropped them is reported instead.
        stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
        while stack:
            node, path = stack.pop()
            if isinstance(node, dict):
                entry = duplicates.get(id(node))
                if entry is not None and entry[0] is node:
                    for key in entry[1]:
                        problems.append(
                            Problem(
                                pointer((*path, key)),
                                f"duplicate member name {key!r}: JSON object member names "
                                "must be unique",
                            )
                        )
                stack.extend((child, (*path, key)) for key, child in node.items())
            elif isinstance(node, list):
                stack.extend((child, (*path, index)) for index, child in enumerate(node))
        problems.sort()
    return value, problems
