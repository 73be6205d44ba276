# Type stub for the gateway's use of frames.py (which is MicroPython code without annotations).
from collections.abc import Callable
from typing import Any, Protocol

VERSION: int
UP: str
DOWN: str
KINDS: dict[str, str]
MAC_LEN: int
HEADER_MIN: int
MAX_DEVICE: int
MAX_PAYLOAD: int
MAX_COUNTER: int
MAX_DEPTH: int
MAX_NUMBER: int
MAX_FRAME: int
NONCE_BYTES: int
TRUNCATED: str
OVERSIZED: str
BAD_VERSION: str
BAD_KIND: str
BAD_DIRECTION: str
WRONG_DEVICE: str
BAD_LENGTH: str
BAD_MAC: str
BAD_PAYLOAD: str
BAD_COUNTER: str
REPLAYED: str
NO_SESSION: str
BAD_NONCE: str

class FrameError(Exception):
    code: str
    def __init__(self, code: str, detail: str = "") -> None: ...

class _Counter(Protocol):
    def next(self) -> int: ...

def hmac_sha256(key: bytes, msg: bytes) -> bytes: ...
def same(a: bytes, b: bytes) -> bool: ...
def dumps(obj: Any) -> bytes: ...
def encode(
    key: bytes, kind: str, direction: str, device: str, counter: int, payload: bytes
) -> bytes: ...
def decode(key: bytes, direction: str, device: str, frame: bytes) -> tuple[str, int, bytes]: ...
def parse(payload: bytes) -> dict[str, Any]: ...

class Session:
    key: bytes
    device: str
    me: str
    peer: str
    counter: _Counter
    floor: int | None
    pending: str | None
    def __init__(
        self,
        key: bytes,
        device: str,
        me: str,
        counter: _Counter,
        rand: Callable[[int], bytes] | None = None,
    ) -> None: ...
    @property
    def ready(self) -> bool: ...
    def reset(self) -> None: ...
    def seal(self, kind: str, obj: dict[str, Any]) -> bytes: ...
    def hello(self, extra: dict[str, Any] | None = None) -> bytes: ...
    def welcome(self, nonce: str) -> bytes: ...
    def open(self, frame: bytes) -> tuple[str, dict[str, Any]]: ...
