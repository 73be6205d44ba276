"""`async with` for the peer client's objects that end with `close()` (a connection, a client)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosedOnExit:
    """`async with x:` returns X and awaits `x.close()` on the way out, also on an error."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
