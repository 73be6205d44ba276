"""Errors of the peer client: all of them are `P2PError`s, each with a stable `code`."""

from __future__ import annotations

from gateway.codes import Code
from gateway.errors import P2PError


class PeerError(P2PError):
    """The peer client failed to get an answer from a gateway."""

    code: str = Code.PEER


class PeerRequestError(PeerError):
    """The gateway refused or failed a request: `code` says why, `status` has HTTP meaning.

    `code` is the gateway's stable reason (`forbidden`, `unknown_thing`, `jammed`, `replayed`,
    `rate_limited`, ...), `reason` a sentence for people (empty when the gateway gave none).
    """

    def __init__(self, code: str, reason: str = "", status: int = 400) -> None:
        super().__init__(reason or code, code=code)
        self.status = status

    @property
    def reason(self) -> str:
        return str(self)


class PeerTimeoutError(PeerError):
    """No answer from the gateway in time (the request may or may not have been carried out)."""

    code: str = Code.TIMEOUT


class PeerConnectionError(PeerError):
    """The WebSocket could not be opened, or it closed while a request or stream was open."""

    code: str = Code.CONNECTION_CLOSED
