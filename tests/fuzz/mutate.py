"""Mutators: byte flips, truncation, splicing, deep nesting, huge numbers, unicode, duplicate keys
and JSON type swaps. Everything is drawn from one `random.Random`, so a seed fixes every input."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

# Tokens that broke parsers before, or commonly do.
TOKENS: tuple[bytes, ...] = (
    b"[" * 3000,
    b'{"a":' * 50,
    b"9" * 5000,
    b"-" + b"9" * 400 + b".0",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"-0",
    b"0.0000000000000000000000000000001",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"\\u0000"',
    b"\x00",
    b"\xff\xfe",
    b"\xed\xa0\x80",  # an encoded surrogate (invalid UTF-8)
    b"\xc0\x80",  # overlong NUL
    "\u202e\u2028\U0001f600".encode(),
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
    b'"' + b"a" * 70000 + b'"',
    b'{"a":1,"a":2}',
    b"=",
    b".",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
)

# Values a type swap puts in place of a JSON node.
SWAPS: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    2**63,
    2**200,
    1.5,
    -0.0,
    "",
    "x" * 300,
    "\u0000",
    "*",
    [],
    {},
    [[[[[[]]]]]],
    {"a": {"b": {"c": {}}}},
    ["readproperty"],
    [1, "a", None],
)

_KEY = re.compile(rb'"([A-Za-z0-9_@:\-]{1,24})"\s*:')

Mutator = Callable[[random.Random, bytes, Sequence[bytes]], bytes]


def flip(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b))
        b[i] = b[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(b)


def truncate(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def delete(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 16) :]


def insert_token(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice(TOKENS) + data[i:]


def replace_number(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    spans = [m.span() for m in re.finditer(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", data)]
    if not spans:
        return insert_token(rng, data, pool)
    a, b = rng.choice(spans)
    big = rng.choice(
        (b"9" * rng.choice((20, 400, 4301, 5000)), b"1e400", b"1" * 400 + b".5", b"-0", b"1E-999")
    )
    return data[:a] + big + data[b:]


def splice(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    other = rng.choice(pool) if pool else data
    i = rng.randrange(len(data) + 1)
    j = rng.randrange(len(other) + 1)
    return data[:i] + other[j:]


def repeat(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 64))
    return data[:j] + data[i:j] * rng.randint(2, 200) + data[j:]


def nest(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """Wrap a value (after a ':' or at the start) in many brackets."""
    depth = rng.choice((8, 33, 100, 1000, 3000, 5000))
    opener, closer = (b"[", b"]") if rng.random() < 0.5 else (b'{"k":', b"}")
    colons = [m.end() for m in re.finditer(rb":", data)]
    if not colons:
        return opener * depth + data + closer * depth
    i = rng.choice(colons)
    m = re.match(rb'\s*(?:"(?:[^"\\]|\\.)*"|-?[0-9.eE+-]+|true|false|null)', data[i:])
    end = i + (m.end() if m else 0)
    return data[:i] + opener * depth + data[i:end] + closer * depth + data[end:]


def duplicate_key(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    keys = list(_KEY.finditer(data))
    if not keys:
        return insert_token(rng, data, pool)
    m = rng.choice(keys)
    return data[: m.start()] + m.group(0) + b"1," + data[m.start() :]


def unicode(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    i = rng.randrange(len(data) + 1)
    choices = (
        chr(rng.randrange(0x80, 0x800)).encode(),
        chr(rng.randrange(0x800, 0xD800)).encode(),
        chr(rng.randrange(0x10000, 0x110000)).encode(),
        bytes([rng.randrange(0x80, 0x100)]),
        b"\\u" + f"{rng.randrange(0xD800, 0xE000):04x}".encode(),
    )
    return data[:i] + rng.choice(choices) + data[i:]


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_nodes(v, (*path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_nodes(v, (*path, i)))
    return out


def type_swap(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """Parse as JSON, put a value of another type somewhere (or drop/add a member), dump back."""
    try:
        return _type_swap(rng, data)
    except (ValueError, RecursionError, TypeError):  # not JSON (or too deep to walk here)
        return flip(rng, data, pool)


def _type_swap(rng: random.Random, data: bytes) -> bytes:
    value = json.loads(data)
    paths = _nodes(value)
    path = rng.choice(paths)
    new = rng.choice(SWAPS)
    if not path:
        value = new
    else:
        parent = value
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.25 and isinstance(parent, dict):
            parent[rng.choice(("x", "role", "grants", "id", "typ", "@type", "v", "n"))] = new
        else:
            parent[path[-1]] = new
    return json.dumps(value, separators=(",", ":")).encode()


MUTATORS: tuple[Mutator, ...] = (
    flip,
    flip,
    truncate,
    delete,
    insert_token,
    replace_number,
    splice,
    repeat,
    nest,
    duplicate_key,
    unicode,
    type_swap,
    type_swap,
    type_swap,
)


def mutate(rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """One input: a seed with 1 to 3 stacked mutations."""
    data = rng.choice(seeds)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        data = rng.choice(MUTATORS)(rng, data, seeds)
    return data[: 2 * 1024 * 1024]
