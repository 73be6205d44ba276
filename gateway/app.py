"""Compose a running gateway from its config: identity, ACL, audit, drivers, Things, bindings.

Start-up is all-or-nothing: if any Thing fails to start, the ones already started are put back in
their safe state and stopped, and nothing listens. Once it serves, the gateway announces itself
(gateway/ops/presence.py: sd_notify READY and watchdog, mDNS, running.json, config watch).
Shutdown puts every Thing in its safe state (locks locked, heaters off), saves the writable
settings, flushes the audit log, and returns a `Stopped` report saying whether that all held.

Every background task is owned by `Gateway.tasks` (gateway/tasks.py): one that dies is logged
and recorded in the audit log ("task X died: ..."); the ACL watcher is restarted if it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from device_drivers.backoff import Backoff
from gateway import jsonsafe
from gateway.acl import AclStore
from gateway.audit import AUDIT_FILE, AuditLog
from gateway.auth import TokenVerifier
from gateway.bindings.http import HttpBinding
from gateway.companion.broker import things_root
from gateway.companion.setup import CompanionSetup, broker_url
from gateway.config import GatewayConfig
from gateway.config.model import url_host
from gateway.errors import StreembitError
from gateway.identity import KeyPair
from gateway.ops.presence import Presence
from gateway.ops.sdnotify import Notifier
from gateway.ops.sysaudit import ACL_POLL_S, AUDIT_RETRY_CAP_S, SystemAudit
from gateway.ops.view import GatewayView
from gateway.requests import RequestProcessor
from gateway.state import StateDir
from gateway.storage import atomic_write_text
from gateway.tasks import TaskOwner, describe, report_deaths_here
from gateway.things import Thing, build_things
from gateway.wot import build_directory_td, build_td, td_digest
from gateway.wot.td import MqttForms

if TYPE_CHECKING:  # imported when P2P starts (the gateway's RSS without P2P)
    from gateway.bindings.mqtt import MqttBinding
    from gateway.bindings.p2p import P2PBinding
    from gateway.p2p import DhtNode
    from gateway.reach.manager import Reach
    from gateway.reach.relay import RelayService

log = logging.getLogger(__name__)

SETTINGS_FILE = "thing-settings.json"  # writable properties saved at shutdown, restored at start
__all__ = ["ACL_POLL_S", "SETTINGS_FILE", "Gateway", "Stopped", "state_path"]
SAFE_SUMMARY = "locks locked, heaters off, state saved"


@dataclass(frozen=True)
class Stopped:
    """What `Gateway.stop()` achieved: a Thing is unsafe if its stop() failed or it is not
    confirmed in its safe state afterwards (`Thing.safe_state_problem`: a lock that could not
    confirm its bolt, a heater or switch output whose off write failed)."""

    unsafe: tuple[str, ...] = ()  # "name: why"
    settings_saved: bool = True

    @property
    def safe(self) -> bool:
        return not self.unsafe

    def summary(self) -> str:
        if self.safe and self.settings_saved:
            return f"stopped: {SAFE_SUMMARY}"
        parts = []
        if self.unsafe:
            parts.append("NOT confirmed in their safe state: " + "; ".join(self.unsafe))
        if not self.settings_saved:
            parts.append("the settings were not saved")
        return "stopped: " + ", ".join(parts)


@dataclass
class Gateway:
    config: GatewayConfig
    state: StateDir
    identity: KeyPair
    acl: AclStore
    audit: AuditLog
    things: dict[str, Thing]
    processor: RequestProcessor
    verifier: TokenVerifier
    http: HttpBinding | None = None
    runner: web.AppRunner | None = None
    http_url: str = ""
    p2p: P2PBinding | None = None
    dht: DhtNode | None = None
    relay: RelayService | None = None  # serves relays when public (docs/reach.md)
    reach: Reach | None = None  # how peers reach us: public, mapped, relayed
    companion: CompanionSetup | None = None
    mqtt: MqttBinding | None = None
    started_at: float = field(default_factory=time.monotonic)
    reset_requested: asyncio.Event = field(default_factory=asyncio.Event)  # the button was held
    reset_button: Any = None
    reset_pin_factory: Any = None  # gpiozero pin factory for the reset button (tests: MockFactory)
    notifier: Notifier | None = None  # sd_notify; `create` takes it from $NOTIFY_SOCKET
    tasks: TaskOwner = field(init=False)  # every background task of the gateway itself
    presence: Presence = field(init=False)  # sd_notify, mDNS, running.json, config watch
    system: SystemAudit = field(init=False)  # the gateway's own audit records
    task_deaths: int = 0  # tasks of the gateway and of its parts that died (each audited)
    _tds: dict[str, dict[str, Any]] = field(default_factory=dict)
    _directory: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.system = SystemAudit(self.audit)
        self.tasks = TaskOwner("gateway", self._task_died)
        report_deaths_here(self._task_died)  # the parts' owners (DHT, bindings, drivers) too
        self.presence = Presence(self.notifier, self.tasks)

    @property
    def id(self) -> str:
        return self.identity.id

    @classmethod
    async def create(
        cls,
        config: GatewayConfig,
        *,
        create_key: bool = False,
        inject: dict[str, dict[str, Any]] | None = None,  # thing -> objects for its driver
        sd_notify: bool = True,  # tell systemd READY/WATCHDOG/STOPPING when $NOTIFY_SOCKET is set
    ) -> Gateway:
        state = StateDir(config.state_dir)
        identity = state.load_identity(create=create_key)
        state.lock()
        acl = AclStore(state.path, identity.id)
        audit = AuditLog.open(state.path / AUDIT_FILE, signer=identity)  # signed checkpoints
        inject = inject or {}
        companion = CompanionSetup(config, state, identity.id)
        try:  # pre-flight: drivers, pins, ports, device files; nothing opened yet
            things = build_things(
                config.things, lambda tc: {**companion.inject(tc), **inject.get(tc.name, {})}
            )
        except BaseException:
            audit.close()
            state.unlock()
            raise
        processor = RequestProcessor(things, acl, audit)
        verifier = TokenVerifier(identity.id, acl.key_for)
        acl.on_change.append(lambda *_: verifier.invalidate())
        notifier = Notifier.from_env() if sd_notify else None
        gw = cls(
            config, state, identity, acl, audit, things, processor, verifier, notifier=notifier
        )
        gw.companion = companion
        return gw

    def tds(self) -> dict[str, dict[str, Any]]:
        return self._tds

    def directory_td(self) -> dict[str, Any]:
        return self._directory

    async def start(self) -> None:
        started: list[Thing] = []
        for thing in self.things.values():  # driver and safety faults -> audit log (system)
            thing.bus.listeners.append(self.system.fault_listener(thing.name))
        try:
            for thing in self.things.values():
                await thing.start()
                started.append(thing)
            await self._restore_settings()
            await self._start_http()
            await self._start_mqtt()
            if self.config.p2p.enabled:
                await self._start_p2p()
            self._start_reset_button()
            self.tasks.keep_running(
                lambda: self.system.watch_acl(self.acl),
                name="acl-watch",
                backoff=Backoff(cap_s=AUDIT_RETRY_CAP_S),
            )
            await self.presence.start(self)
        except BaseException:
            self._close_reset_button()
            await self.tasks.close()
            await self.presence.stop()
            await self._stop_network()
            for thing in reversed(started):
                await thing.stop()
            if self.runner is not None:
                with contextlib.suppress(Exception):
                    await self.runner.cleanup()
            self.audit.close()
            self.state.unlock()
            raise
        self.system.record("start", f"gateway started, {len(self.things)} things")

    def _start_reset_button(self) -> None:
        """A long press of the configured GPIO button: factory reset (physical presence).

        The press is handled on a gpiozero thread; the gateway then stops (`reset_requested`),
        and its service manager starts it again, unprovisioned."""
        cfg = self.config.reset_button
        if cfg.pin is None:
            return
        from gateway.provisioning.reset import ResetButton, gateway_reset

        loop = asyncio.get_running_loop()

        def done() -> None:  # on the gpiozero thread
            loop.call_soon_threadsafe(self.reset_requested.set)

        self.reset_button = ResetButton(
            cfg.pin,
            gateway_reset(
                self.state.path,
                self.acl,
                self.audit,
                done,
            ),
            hold_time=cfg.hold_s,
            pull_up=cfg.pull_up,
            pin_factory=self.reset_pin_factory,
        )

    def _close_reset_button(self) -> None:
        if self.reset_button is not None:
            self.reset_button.close()
            self.reset_button = None

    def _task_died(self, name: str, exc: BaseException) -> None:
        """TaskOwner's report: a task of the gateway or of one of its parts ended with an
        exception (logged by its owner)."""
        self.task_deaths += 1
        self.system.record("taskdied", f"task {name} died: {describe(exc)}")

    async def _start_http(self) -> None:
        cfg = self.config.http
        self.http = HttpBinding(
            self.processor,
            self.verifier,
            self.acl,
            self.tds,
            self.directory_td,
            max_body=cfg.max_body,
            ops=GatewayView(self),  # /status, /status.json, /metrics (gateway/ops/view.py)
        )
        self.runner = web.AppRunner(self.http.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.host, cfg.port, reuse_address=True)
        await site.start()
        port = cfg.port
        if self.runner.addresses:
            port = int(self.runner.addresses[0][1])
        host = self.config.advertise[0] if self.config.advertise else cfg.host
        self.http_url = (cfg.base_url or f"http://{url_host(host)}:{port}").rstrip("/")
        for name, thing in self.things.items():
            self._tds[name] = build_td(
                thing, gateway_id=self.id, base_url=self.http_url, mqtt=self._mqtt_forms()
            )
        self._directory = build_directory_td(
            gateway_id=self.id, base_url=self.http_url, title=f"{self.config.name} directory"
        )

    async def _start_p2p(self) -> None:
        """The sealed-message WebSocket, then the DHT node, then our signed contact record."""
        # The P2P side is loaded only when it is on (about 2 MB of RSS for an HTTP-only gateway)
        from gateway.bindings.p2p import P2PBinding
        from gateway.p2p import DhtNode

        cfg = self.config.p2p
        self.p2p = P2PBinding(
            self.identity,
            self.processor,
            self.acl,
            self.tds,
            host=cfg.ws_host,
            port=cfg.ws_port,
            rate_per_s=cfg.rate_per_s,
            burst=cfg.burst,
        )
        from gateway.reach.relay import RelayService

        # relay routes on the P2P listener, off until a dial-back check says we are public
        self.relay = RelayService(relay_id=self.identity.id, enabled=False)
        self.relay.mount(self.p2p.app)
        from gateway.reach.lookup import LookupService

        # DHT lookups over WebSocket for browsers (docs/reach.md); `unavailable` until the DHT runs
        lookup = LookupService()
        lookup.mount(self.p2p.app)
        await self.p2p.start()
        self.dht = DhtNode(cfg.dht_host, cfg.dht_port, bootstrap=cfg.bootstrap)
        await self.dht.start()
        lookup.dht = self.dht
        if cfg.reach:
            from gateway.reach.manager import Reach

            self.reach = Reach(
                identity=self.identity,
                binding=self.p2p,
                dht=self.dht,
                config=cfg,
                republish=self.publish_contact,
                relay=self.relay,
            )
            await self.reach.start()
        await self.publish_contact()

    @property
    def contact_addrs(self) -> list[str]:
        if self.p2p is None:
            return list(self.config.p2p.public_ws)
        url = urlsplit(self.p2p.url)  # the listening port, at each advertised host
        addrs = [*self.config.p2p.public_ws]
        addrs += [f"ws://{url_host(h)}:{url.port}{url.path}" for h in self.config.advertise]
        addrs = addrs or [self.p2p.url]
        if self.reach is not None:  # observed public or mapped address, then relays
            addrs += [a for a in self.reach.addrs if a not in addrs]
        return addrs

    def things_digest(self) -> str:
        """Digest of the TD Directory listing, published in the contact record."""
        return td_digest({"things": [self._tds[name] for name in sorted(self._tds)]})

    async def publish_contact(self) -> int:
        """(Re)publish the signed contact record; returns how many nodes accepted it.

        The DHT node re-signs and republishes it before it expires; call this again when the
        addresses change. A lone first node stores it locally and counts itself."""
        if self.dht is None:
            return 0
        _, count = await self.dht.publish_contact(
            self.identity,
            addrs=self.contact_addrs,
            td_digest=self.things_digest(),
            ttl=self.config.p2p.record_ttl_s,
        )
        if count == 0:
            log.warning("contact record not stored by any DHT node yet; it is republished")
        return count

    def _mqtt_forms(self) -> MqttForms | None:
        cfg = self.config.mqtt
        if cfg.broker is None or not cfg.things:
            return None
        return MqttForms(broker_url(cfg.public_url or cfg.broker), things_root(self.id))

    async def _start_mqtt(self) -> None:
        """The W3C MQTT binding (retained values, events) and Home Assistant discovery."""
        cfg = self.config.mqtt
        if cfg.broker is None or self.companion is None or not (cfg.things or cfg.discovery):
            return
        from gateway.bindings.mqtt import MqttBinding  # paho: loaded only with MQTT on (RSS)

        self.mqtt = MqttBinding(
            self.companion.connection(cfg.broker),
            self.things,
            gateway_id=self.id,
            gateway_name=self.config.name,
            publish_things=cfg.things,
            discovery=cfg.discovery,
            discovery_prefix=cfg.discovery_prefix,
        )
        await self.mqtt.start()

    async def _stop_network(self) -> None:
        if self.mqtt is not None:
            with contextlib.suppress(Exception):
                await self.mqtt.stop()
            self.mqtt = None
        if self.reach is not None:  # relay reservations and router mappings are released
            with contextlib.suppress(Exception):
                await self.reach.stop()
            self.reach = None
        if self.p2p is not None:
            with contextlib.suppress(Exception):
                await self.p2p.stop()
            self.p2p = None
        if self.dht is not None:
            with contextlib.suppress(Exception):
                await self.dht.stop()
            self.dht = None

    async def stop(self) -> Stopped:
        """Safe state first, then settings, then the listeners, then the audit log. Never raises
        (but a cancellation of the caller propagates). Returns what was achieved."""
        self.presence.stopping()  # STOPPING=1: the shutdown begins, nothing is safe yet
        self._close_reset_button()
        await self.tasks.close()
        await self.presence.stop()  # mDNS goodbye: consumers stop finding a stopping gateway
        await self._stop_network()  # no new peer requests; running ones finish first
        unsafe: list[str] = []
        for thing in self.things.values():
            try:
                await thing.stop()
            except Exception as exc:  # stop() never raises; a broken one must not stop the rest
                log.exception("thing %s failed to stop cleanly", thing.name)
                unsafe.append(f"{thing.name}: stop failed: {describe(exc)}")
                continue
            problem = thing.safe_state_problem()
            if problem is not None:
                unsafe.append(f"{thing.name}: {problem}")
        saved = True
        try:
            await self._save_settings()
        except Exception as exc:
            log.error("settings not saved: %s", describe(exc))
            saved = False
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await self.runner.cleanup()
        report = Stopped(tuple(unsafe), saved)
        self.presence.stopped(report.summary())
        self.system.record(
            "stop", "gateway stopped; safe state" if report.safe else report.summary()
        )
        self.audit.close()
        self.state.unlock()
        return report

    async def _save_settings(self) -> None:
        saved: dict[str, dict[str, Any]] = {}
        for name, thing in self.things.items():
            values: dict[str, Any] = {}
            for pname, spec in thing.properties.items():
                if spec.read_only:
                    continue
                with contextlib.suppress(StreembitError):
                    values[pname] = await thing.read_property(pname)
            if values:
                saved[name] = values
        atomic_write_text(self.state.path / SETTINGS_FILE, json.dumps(saved, indent=1))

    async def _restore_settings(self) -> None:
        path = self.state.path / SETTINGS_FILE
        try:
            saved = jsonsafe.loads(path.read_bytes(), jsonsafe.FILE_LIMITS)
        except (OSError, ValueError):
            return
        if not isinstance(saved, dict):
            return
        for name, values in saved.items():
            thing = self.things.get(name)
            if thing is None or not isinstance(values, dict):
                continue
            for pname, value in values.items():
                spec = thing.properties.get(pname)
                if spec is None or spec.read_only:
                    continue
                try:
                    await thing.write_property(pname, value, "system")
                except StreembitError as exc:
                    log.warning("not restoring %s.%s: %s", name, pname, exc)

    def ready_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "http": self.http_url,
            "app": self.http_url + "/app",  # the web app (docs/webapp.md)
            "things": list(self.things),
            "owner": self.acl.owner.id if self.acl.owner else None,
            "state": str(self.state.path),
            "ready_s": round(time.monotonic() - self.started_at, 3),
        }
        if self.dht is not None:
            host = self.config.advertise[0] if self.config.advertise else self.dht.host
            info["dht"] = f"{url_host(host)}:{self.dht.port}"  # what others bootstrap through
        if self.p2p is not None:
            info["ws"] = self.contact_addrs[0] if self.contact_addrs else self.p2p.url
        if self.reach is not None:
            st = self.reach.state
            info["reach"] = {"mode": st.mode, "addrs": self.reach.addrs}
        if self.presence.mdns is not None:
            info["mdns"] = self.presence.mdns.interfaces
        return info


def state_path(p: str | Path) -> Path:
    return Path(p).expanduser().resolve()
