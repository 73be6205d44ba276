"""LinkPool: one open link per port, shared by the drivers naming that port with one setting."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable

from device_drivers.errors import DriverConfigError
from device_drivers.serial.link import LinkUser, SerialLink, port_key


class LinkPool:
    """The open links by port, shared by the drivers naming the same port and settings."""

    def __init__(self) -> None:
        self._links: dict[str, SerialLink] = {}
        self._share: dict[str, str] = {}

    def get(self, port: str) -> SerialLink | None:
        return self._links.get(port_key(port))

    async def acquire(self, driver: LinkUser, make: Callable[[], SerialLink]) -> SerialLink:
        key = port_key(driver.port)
        link = self._links.get(key)
        if link is not None and self._share.get(key) != driver.share_key:
            raise DriverConfigError(
                f"thing {driver.thing!r}: driver setting 'port': {driver.port} is already open "
                "with other settings (protocol, baud rate, parity)"
            )
        if link is None:
            link = make()
            self._links[key] = link
            self._share[key] = driver.share_key
            link.drivers.add(driver)
            try:
                await link.open()
            except BaseException:
                self._links.pop(key, None)
                self._share.pop(key, None)
                with contextlib.suppress(Exception):
                    await link.close()
                raise
            return link
        link.drivers.add(driver)
        return link

    async def release(self, driver: LinkUser, link: SerialLink) -> None:
        link.drivers.discard(driver)
        if link.drivers:
            return
        for key, val in list(self._links.items()):
            if val is link:
                del self._links[key]
                self._share.pop(key, None)
        await link.close()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LinkPool] = weakref.WeakKeyDictionary()


def loop_pool() -> LinkPool:
    """The default pool: one per event loop (links are bound to the loop that opened them)."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = LinkPool()
    return pool
