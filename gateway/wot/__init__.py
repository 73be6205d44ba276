"""W3C Web of Things: Thing Descriptions (build, validate, digest) for the gateway's Things.

- `gateway.wot.td`: `build_td`, `build_directory_td`, `thing_id`, `td_digest`
- `gateway.wot.validate`: `validate_td`, `validate_td_text` (TD 1.1 JSON Schema + extra checks)
- `gateway.wot.jsonparse`: duplicate-key-detecting JSON parsing, JSON Pointers
"""

from __future__ import annotations

from typing import Any

from gateway.wot.jsonparse import Problem, loads_strict
from gateway.wot.td import build_directory_td, build_td, directory_id, td_digest, thing_id

_LAZY = {"TdValidationError", "td_problems", "validate_td", "validate_td_text"}


def __getattr__(name: str) -> Any:
    """The validator (and jsonschema behind it) is imported only when first used."""
    if name in _LAZY:
        from gateway.wot import validate

        return getattr(validate, name)
    raise AttributeError(name)

__all__ = [
    "Problem",
    "TdValidationError",
    "build_directory_td",
    "build_td",
    "directory_id",
    "loads_strict",
    "td_digest",
    "td_problems",
    "thing_id",
    "validate_td",
    "validate_td_text",
]
