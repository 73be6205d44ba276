# Type stub for counter.py (MicroPython code without annotations).
from typing import Protocol

MASK: int
DEFAULT_BLOCK: int

class _Fs(Protocol):
    def read(self, path: str) -> str | None: ...
    def write(self, path: str, text: str) -> None: ...

class CounterLost(Exception): ...

class Counter:
    path: str
    block: int
    writes: int
    def __init__(
        self, path: str, block: int = ..., fs: _Fs | None = None, start: int = 1
    ) -> None: ...
    def next(self) -> int: ...
    def peek(self) -> int: ...
