"""The Streembit P2P binding's WebSocket conventions, shared by the gateway side and the client.

Besides sealed messages (docs/protocol.md) the gateway sends one other kind of frame: a plain
JSON refusal for a frame it could not attribute to a verified sender (garbage, a message sealed
to another key, a forged signature, a flood refused before opening). It never seals anything to
an unverified key, so this is the only answer such a frame can get:

    {"error": "<code>", "status": 400..599, "frame": "<digest>"}

`frame` is `frame_digest()` of the refused frame (SHA-256, base64url, first 22 characters =
128 bits): the sender knows what it sent and can fail the matching request at once instead of
waiting for a timeout. The refusal is unauthenticated (anyone able to inject into the
connection could forge it), so a client must treat it only as "this request failed".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from gateway import jsonsafe
from gateway.codes import http_status
from gateway.messages import MAX_MESSAGE_BYTES
from gateway.messages.codec import b64url_encode

DEFAULT_PATH: Final = "/p2p"
#: Frames up to this size are read and refused in-band (`too_large`, the connection stays);
#: a larger one makes the WebSocket layer close the connection (1009).
HARD_FRAME_BYTES: Final = 2 * MAX_MESSAGE_BYTES
DIGEST_CHARS: Final = 22  # 128 bits of SHA-256: unique among a connection's frames
MAX_PLAIN_ERROR_BYTES: Final = 512  # a plain refusal is tiny; anything larger is not one
PLAIN_ERROR_LIMITS: Final = jsonsafe.JsonLimits(max_bytes=MAX_PLAIN_ERROR_BYTES, max_depth=2)
MAX_CODE_LEN: Final = 64

#: Reply statuses (typ "reply").
OK: Final = 200  # with output
ACCEPTED: Final = 202  # observe/subscribe started; events follow on the same connection
NO_CONTENT: Final = 204  # done, nothing to return


def refusal_status(code: str) -> int:
    """HTTP-like status of a refusal code: the registry's (gateway/codes.py), 400 if unknown."""
    return http_status(code, default=400)


def frame_digest(frame: str | bytes) -> str:
    """The id of a frame in a plain refusal: SHA-256 of its bytes, base64url, 22 characters."""
    data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
    return b64url_encode(hashlib.sha256(data).digest())[:DIGEST_CHARS]


def plain_error(code: str, frame: str | bytes) -> str:
    """The plain JSON refusal of FRAME (see the module docstring)."""
    body = {"error": code, "status": refusal_status(code), "frame": frame_digest(frame)}
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class PlainError:
    """A parsed plain refusal."""

    code: str
    status: int
    frame: str


def parse_plain_error(text: str) -> PlainError | None:
    """Parse a plain refusal; None if TEXT is not a well-formed one."""
    if len(text) > MAX_PLAIN_ERROR_BYTES or not text.startswith("{"):
        return None
    try:
        obj: Any = jsonsafe.loads(text, PLAIN_ERROR_LIMITS, what="a plain refusal")
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    code, status, frame = obj.get("error"), obj.get("status", 400), obj.get("frame")
    if not isinstance(code, str) or not 0 < len(code) <= MAX_CODE_LEN:
        return None
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        return None
    if not isinstance(frame, str) or len(frame) != DIGEST_CHARS:
        return None
    return PlainError(code, status, frame)
