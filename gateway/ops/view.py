"""What the status page and /metrics show of a running gateway (read-only views of it)."""

from __future__ import annotations

import logging
import time
from functools import cached_property
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

from gateway.ops import runinfo
from gateway.ops.metrics import Family

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

UNSPECIFIED_HOSTS: Final = ("", "0.0.0.0", "::")  # noqa: S104 (names, not a bind)
QR_SCALE: Final = 4  # SVG units per module


def package_version() -> str:
    try:
        return metadata.version("streembit-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


class GatewayView:
    """Read-only facts about GW for the status page and /metrics (bindings/http/status.py)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.started_wall = time.time()

    @property
    def gateway_id(self) -> str:
        return self.gw.id

    @property
    def metrics_mode(self) -> str:
        return self.gw.config.http.metrics

    @cached_property
    def version(self) -> str:
        return package_version()

    def drift(self) -> runinfo.Drift | None:
        return runinfo.drift(runinfo.read(self.gw.state.path))

    def info(self) -> dict[str, Any]:
        gw = self.gw
        acl = gw.acl.current
        drift = self.drift()
        info: dict[str, Any] = {
            "id": gw.id,
            "name": gw.config.name,
            "owner": gw.acl.owner.id if gw.acl.owner else None,
            "version": self.version,
            "started": self.started_wall,
            "uptime_s": round(time.monotonic() - gw.started_at, 1),
            "http": gw.http_url,
            "ws": gw.p2p.url if gw.p2p is not None else None,
            "dht": f"{gw.dht.host}:{gw.dht.port}" if gw.dht is not None else None,
            "dht_peers": gw.dht.routing_size() if gw.dht is not None else None,
            "acl_version": acl.version if acl else None,
            "grants": len(acl.grants) if acl else 0,
            "audit_healthy": gw.audit.healthy,
            "config": gw.config.source if runinfo.config_file(gw.config.source) else None,
            "config_changed": drift.message() if drift else None,
            "reach": gw.reach.status() if gw.reach is not None else None,
        }
        return info

    def qr_codes(self) -> list[dict[str, str]]:
        """The gateway's QR (its key, addresses, DHT hints; never a setup code: the page is
        shown only once there is an owner) and one of the status page's address."""
        import segno

        from gateway.errors import StreembitError
        from gateway.provisioning.payload import GatewayPayload

        gw = self.gw
        codes: list[dict[str, str]] = []
        hints: tuple[str, ...] = ()
        if gw.dht is not None and gw.dht.host not in UNSPECIFIED_HOSTS:
            hints = (f"{gw.dht.host}:{gw.dht.port}",)
        try:
            text = GatewayPayload(gw.identity.public, tuple(gw.contact_addrs[:8]), hints).encode()
            qr = segno.make_qr(text, mode="alphanumeric", error="q")
            codes.append(
                {
                    "label": "gateway: id and addresses (scan with a Streembit peer)",
                    "text": text,
                    "svg": qr.svg_data_uri(scale=QR_SCALE, border=4),
                }
            )
        except StreembitError as exc:
            log.warning("no gateway QR on the status page: %s", exc)
        url = f"{gw.http_url}/status"
        codes.append(
            {
                "label": "this status page",
                "text": url,
                "svg": segno.make_qr(url, error="m").svg_data_uri(scale=QR_SCALE, border=4),
            }
        )
        return codes

    def metric_families(self) -> list[Family]:
        gw = self.gw
        counters = gw.processor.counters
        fams = [
            Family("build_info", "Gateway version (always 1)", "gauge").add(
                1, version=self.version, gateway=gw.id
            ),
            Family("uptime_seconds", "Seconds since the gateway started", "gauge").add(
                round(time.monotonic() - gw.started_at, 3)
            ),
            Family("requests_total", "Requests decided (every binding)", "counter").add(
                counters.get("requests", 0)
            ),
            Family("requests_denied_total", "Requests the ACL refused", "counter").add(
                counters.get("denied", 0)
            ),
            Family(
                "requests_failed_total",
                "Requests refused or failed for other reasons (bad token, fault, audit)",
                "counter",
            ).add(counters.get("errors", 0)),
        ]
        faults = Family("driver_faults_total", "Faults reported by a Thing's driver", "counter")
        faulted = Family("thing_faulted", "1 while a Thing reports a fault", "gauge")
        subs = Family("event_subscribers", "Open observations and subscriptions", "gauge")
        for name, thing in gw.things.items():
            faults.add(thing.bus.faults, thing=name)
            last = thing.bus.last.get(("property", "fault"))
            faulted.add(1 if last is not None and last.data is not None else 0, thing=name)
            subs.add(thing.bus.subscriber_count, thing=name)
        fams += [faults, faulted, subs]
        fams.append(
            Family("dht_peers", "Contacts in the DHT routing table", "gauge").add(
                gw.dht.routing_size() if gw.dht is not None else 0
            )
        )
        fams.append(
            Family("p2p_sessions", "Open peer WebSocket sessions", "gauge").add(
                len(gw.p2p.sessions) if gw.p2p is not None else 0
            )
        )
        fams += self._reach_families()
        audit = gw.audit
        fams += [
            Family("audit_records_total", "Audit records committed", "counter").add(audit.records),
            Family("audit_write_failures_total", "Audit batches not committed", "counter").add(
                audit.failures
            ),
            Family("audit_healthy", "1 while the audit log accepts records", "gauge").add(
                1 if audit.healthy else 0
            ),
        ]
        free = audit.free_bytes()
        if free is not None:
            fams.append(
                Family("state_free_bytes", "Free bytes where the state folder lives", "gauge").add(
                    free
                )
            )
        acl = gw.acl.current
        fams += [
            Family("acl_version", "Installed ACL version (0: none)", "gauge").add(
                acl.version if acl else 0
            ),
            Family("token_cache_hits_total", "Bearer tokens served from cache", "counter").add(
                gw.verifier.hits
            ),
            Family("config_changed", "1 when the config file changed since start", "gauge").add(
                1 if self.drift() else 0
            ),
            Family(
                "task_deaths_total",
                "Background tasks of the gateway and its parts that died",
                "counter",
            ).add(gw.task_deaths),
        ]
        return fams

    def _reach_families(self) -> list[Family]:
        """How peers reach the gateway and what relaying costs (docs/reach.md)."""
        gw = self.gw
        mode = Family("reach_mode", "1 for how peers reach the gateway", "gauge")
        current = gw.reach.state.mode if gw.reach is not None else "off"
        for name in ("off", "local", "public", "mapped", "relayed"):
            mode.add(1 if name == current else 0, mode=name)
        st = gw.reach.status() if gw.reach is not None else {}
        res = st.get("reservations") or {}
        relay = gw.relay.stats() if gw.relay is not None else {}
        ups = st.get("upgrades") or {}
        return [
            mode,
            Family("reach_relay_reservations", "Relays holding a reservation for us", "gauge").add(
                res.get("reserved", 0)
            ),
            Family("reach_relayed_sessions", "Peers connected to us through relays", "gauge").add(
                res.get("circuits", 0)
            ),
            Family("reach_punched_total", "Direct links made by hole punching", "counter").add(
                ups.get("punched", 0)
            ),
            Family("relay_reservations", "Reservations this gateway holds as a relay", "gauge").add(
                relay.get("reservations", 0)
            ),
            Family("relay_circuits", "Circuits this gateway relays now", "gauge").add(
                relay.get("circuits_active", 0)
            ),
            Family("relay_bytes_total", "Bytes this gateway relayed", "counter").add(
                relay.get("bytes_relayed", 0)
            ),
        ]
