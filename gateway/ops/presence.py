"""What a running gateway tells its surroundings, besides its bindings: the service manager
(sd_notify READY, WATCHDOG, STOPPING and STATUS; gateway/ops/sdnotify.py), the LAN (mDNS
`_wot._tcp`; gateway/wot/mdns.py), its state folder (`running.json`, and a log line when the
config file is edited meanwhile; gateway/ops/runinfo.py).

`Gateway.start()` starts it once everything serves and `Gateway.stop()` ends it, so a program
using the Python API gets all of it too, not only the `run` and `demo` commands.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from device_drivers.backoff import Backoff
from gateway.ops import runinfo
from gateway.ops.sdnotify import Notifier, watchdog_interval
from gateway.tasks import TaskOwner
from gateway.wot.mdns import MdnsAdvertiser, announce

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

STOPPING_STATUS: Final = "stopping: putting the Things in their safe state"
RESTART_CAP_S: Final = 5.0  # a crashed watchdog or config watch is back within this long


class Presence:
    """The gateway's presence outside its bindings; tasks run under the gateway's TASKS."""

    def __init__(self, notifier: Notifier | None, tasks: TaskOwner) -> None:
        self.notifier = notifier
        self.tasks = tasks
        self.mdns: MdnsAdvertiser | None = None
        self._gw: Gateway | None = None

    async def start(self, gw: Gateway) -> None:
        """Announce GW (serving already): mDNS, running.json, config watch, READY, watchdog."""
        self._gw = gw
        self.mdns = await announce(
            gw.config.mdns,
            http_host=gw.config.http.host,
            gateway_id=gw.id,
            name=gw.config.name,
            base_url=gw.http_url,
            things=list(gw.things),
        )
        runinfo.write(gw.state.path, gw.ready_info(), gw.config.source)
        if runinfo.config_file(gw.config.source):
            path = gw.state.path
            self.tasks.keep_running(
                lambda: runinfo.watch(path), name="config-watch", backoff=_restart()
            )
        notifier = self.notifier
        if notifier is None:
            return
        notifier.ready(f"serving {len(gw.things)} things at {gw.http_url}")
        interval = watchdog_interval()
        if interval is not None:
            self.tasks.keep_running(
                lambda: notifier.run_watchdog(interval),
                name="sd-watchdog",
                backoff=_restart(),
            )

    def stopping(self) -> None:
        """The shutdown begins (STOPPING=1); the Things are not safe yet."""
        if self.notifier is not None:
            self.notifier.stopping(STOPPING_STATUS)

    def stopped(self, status: str) -> None:
        """The Things have stopped: STATUS says in what state (never before it is true)."""
        if self.notifier is not None:
            self.notifier.status(status)

    async def stop(self) -> None:
        """Withdraw the mDNS services (goodbye packets) and remove running.json. Never raises."""
        if self.mdns is not None:
            await self.mdns.stop()
            self.mdns = None
        if self._gw is not None:
            runinfo.remove(self._gw.state.path)
            self._gw = None


def _restart() -> Backoff:
    return Backoff(initial_s=0.5, cap_s=RESTART_CAP_S)
