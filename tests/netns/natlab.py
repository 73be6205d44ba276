"""A NAT lab made of network namespaces: an "internet", public hosts, and home routers doing NAT.

    with nat_lab() as lab:
        seed = lab.public("seed")            # a host on the internet, 203.0.113.100 and up
        home = lab.home("symmetric")         # a host behind a new router of that kind
        home.run([sys.executable, PROBE, "udp", "--port", "40000", "--to", f"{seed.addr}:4000"])

Every address, link, route and nft table exists only inside namespaces made here (`ip netns
add`, names with a random suffix); the machine's own interfaces, routes and nft tables are never
touched, and every namespace is deleted on exit (also on KeyboardInterrupt). Address plan:
  203.0.113.0/24  the internet: a bridge in its own namespace; .2 the lab's STUN responder
                  (made for "upnp" routers), .10-.99 routers' WAN ends, .100-.199 public hosts
  100.64.N.0/24   the CGNAT segment of the N-th "double" router: .1 CGNAT, .2 the home router
  192.168.(70+K).0/24  the K-th home LAN (a bridge in the router): .1 router, .2 and up hosts
Router kinds (RFC 4787 terms): "cone" endpoint-independent mapping and filtering; "port-
restricted" endpoint-independent mapping, address-and-port-dependent filtering; "symmetric"
address-and-port-dependent mapping (`masquerade random`) and filtering; "double" a port-
restricted home router behind a port-restricted CGNAT; "upnp" port-restricted plus miniupnpd
(UPnP-IGD and NAT-PMP on the LAN) writing its mappings into the router's nft table. Needs root,
iproute2 and nftables (and miniupnpd for "upnp"); NatLabUnavailable says what is missing.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

RouterKind = Literal["cone", "port-restricted", "symmetric", "double", "upnp"]
KINDS: Final[tuple[RouterKind, ...]] = ("cone", "port-restricted", "symmetric", "double", "upnp")
INTERNET: Final = "203.0.113"
STUN_ADDR: Final = f"{INTERNET}.2"
STUN_PORT: Final = 3478
NATPMP_PORT: Final = 5351
UPNP_HTTP_PORT: Final = 5000
PROBE: Final = str(Path(__file__).with_name("natprobe.py"))
CMD_TIMEOUT_S: Final = 10.0  # one `ip`/`nft` command; they take milliseconds
READY_TIMEOUT_S: Final = 10.0  # a lab daemon (STUN responder, miniupnpd) gets ready
MINIUPNPD: Final = "/usr/sbin/miniupnpd"


class NatLabUnavailable(RuntimeError):
    """The lab cannot be built here; the message names what is missing."""


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise NatLabUnavailable(f"`{name}` is missing: apt-get install {package}")
    return path


def _ruleset(kind: str, wan: str = "wan0", lan: str = "lan0") -> str:
    """The router's nft ruleset, one statement per line (one `table inet filter`: the table and
    chain names miniupnpd's nft backend writes to)."""
    masq = "masquerade random" if kind == "symmetric" else "masquerade"
    upnp = kind == "upnp"
    cone = kind == "cone"
    lines = ["table inet filter {"]
    if cone:  # endpoint-independent filtering: inbound to a mapped port goes to its LAN owner
        lines += ["    map cone {",
                  "        type inet_proto . inet_service : ipv4_addr . inet_service",
                  "        flags dynamic,timeout",
                  "        timeout 120s",
                  "    }"]  # fmt: skip
    lines += ["    chain input {",
              "        type filter hook input priority 0;",
              "        policy accept;",
              f'        iifname "{wan}" ct state established,related accept',
              f'        iifname "{wan}" drop',
              "    }",
              "    chain forward {",
              "        type filter hook forward priority 0;",
              "        policy drop;",
              "        ct state established,related accept",
              f'        iifname "{lan}" accept']  # fmt: skip
    if cone:
        lines.append(f'        iifname "{wan}" ct status dnat accept')
    if upnp:
        lines.append("        jump miniupnpd")
    lines += ["    }",
              "    chain prerouting {",
              "        type nat hook prerouting priority -100;",
              "        policy accept;"]  # fmt: skip
    if cone:
        lines.append(f'        iifname "{wan}" meta l4proto {{ tcp, udp }} '
                     "dnat ip to meta l4proto . th dport map @cone")  # fmt: skip
    if upnp:
        lines.append("        jump prerouting_miniupnpd")
    lines += ["    }",
              "    chain postrouting {",
              "        type nat hook postrouting priority 100;",
              "        policy accept;"]  # fmt: skip
    if upnp:
        lines.append("        jump postrouting_miniupnpd")
    lines += [f'        oifname "{wan}" {masq}', "    }"]
    if cone:  # after srcnat: learn mapped port -> LAN address and port, refreshed by every packet
        lines += ["    chain learn {",
                  "        type filter hook postrouting priority 200;",
                  "        policy accept;",
                  f'        iifname "{lan}" oifname "{wan}" meta l4proto {{ tcp, udp }} '
                  "update @cone { meta l4proto . th sport : "
                  "ct original ip saddr . ct original proto-src }",
                  "    }"]  # fmt: skip
    if upnp:
        lines += ["    chain miniupnpd {", "    }",
                  "    chain prerouting_miniupnpd {", "    }",
                  "    chain postrouting_miniupnpd {", "    }"]  # fmt: skip
    lines.append("}")
    return "\n".join(lines) + "\n"


@dataclass
class Host:
    """A machine of the lab: one namespace with `eth0` at `addr`."""

    lab: NatLab
    name: str
    ns: str
    addr: str
    router: Router | None = None

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [self.lab.ip, "netns", "exec", self.ns, *argv]

    def run(self, argv: Sequence[str], *, timeout: float = CMD_TIMEOUT_S, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        proc = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                              input=input)  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"[{self.name}] {' '.join(argv)} exited {proc.returncode}: "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")  # fmt: skip
        return proc

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start a process in the namespace (stdout and stderr piped unless given); the lab
        stops it on exit if it is still running."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc: subprocess.Popen[str] = subprocess.Popen(self.argv(argv), text=True, **kwargs)
        self.lab._procs.append(proc)
        return proc


@dataclass
class Router:
    """A NAT router: `wan_addr` on its upstream segment, `lan_addr` on its LAN bridge `lan0`;
    `public_addr` is where the internet sees its hosts (the CGNAT's address for "double")."""

    lab: NatLab
    kind: RouterKind
    ns: str
    wan_addr: str
    lan_prefix: str  # "192.168.71": the LAN is lan_prefix.0/24
    upstream: Router | None = None  # "double": the CGNAT in front
    hosts: list[Host] = field(default_factory=list)

    @property
    def lan_addr(self) -> str:
        return f"{self.lan_prefix}.1"

    @property
    def public_addr(self) -> str:
        return self.upstream.wan_addr if self.upstream is not None else self.wan_addr

    def nft(self, *args: str) -> str:
        """Run nft inside the router's namespace (e.g. `nft("list", "ruleset")`)."""
        return self.lab._exec(self.ns, self.lab.nft, *args)


class NatLab:
    """Build with `nat_lab()`; `public(name)` and `home(kind)` add machines."""

    def __init__(self) -> None:
        self.ip = _tool("ip", "iproute2")
        self.suffix = secrets.token_hex(3)
        self._made: list[str] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._pids: list[Path] = []
        self._tmp = Path(tempfile.mkdtemp(prefix=f"natlab-{self.suffix}-"))
        self._wan_next = 10
        self._pub_next = 100
        self._lan_next = 71
        self._cgnat_next = 0
        self._names: set[str] = set()
        self.inet = ""
        self._stun: Host | None = None
        self._nft: str | None = None
        self.publics: list[Host] = []
        self.routers: list[Router] = []

    @property
    def nft(self) -> str:
        if self._nft is None:
            self._nft = _tool("nft", "nftables")
        return self._nft

    # -- low level ------------------------------------------------------------------------
    def _exec(self, ns: str, *argv: str) -> str:
        proc = subprocess.run([self.ip, "netns", "exec", ns, *argv], capture_output=True,
                              text=True, timeout=CMD_TIMEOUT_S)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"[{ns}] {' '.join(argv)}: {proc.stderr.strip()}")
        return proc.stdout

    def _ip(self, *args: str) -> None:
        proc = subprocess.run([self.ip, *args], capture_output=True, text=True,
                              timeout=CMD_TIMEOUT_S)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")

    def _add_ns(self, role: str) -> str:
        name = f"nl{self.suffix}-{role}"
        proc = subprocess.run([self.ip, "netns", "add", name], capture_output=True, text=True,
                              timeout=CMD_TIMEOUT_S)  # fmt: skip
        if proc.returncode != 0:
            raise NatLabUnavailable(
                f"`ip netns add` failed ({proc.stderr.strip()}): the NAT lab makes network "
                "namespaces of its own and needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and "
                "iproute2"
            )
        self._made.append(name)
        self._ip("-n", name, "link", "set", "lo", "up")
        return name

    def _role(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"a lab machine is already named {name!r}")
        self._names.add(name)
        return name

    def _bridge(self, ns: str, name: str, addr: str | None) -> None:
        self._ip("-n", ns, "link", "add", name, "type", "bridge")
        self._ip("-n", ns, "link", "set", name, "up")
        if addr is not None:
            self._ip("-n", ns, "addr", "add", addr, "dev", name)

    def _plug(self, bridge_ns: str, bridge: str, ns: str, ifname: str, addr: str) -> None:
        """A veth pair: `ifname` (with addr) in ns, its peer a port of bridge in bridge_ns."""
        port = f"v{len(self._made)}x{secrets.token_hex(2)}"
        self._ip("-n", bridge_ns, "link", "add", port, "type", "veth", "peer", "name", ifname,
                 "netns", ns)  # fmt: skip
        self._ip("-n", bridge_ns, "link", "set", port, "master", bridge, "up")
        self._ip("-n", ns, "addr", "add", addr, "dev", ifname)
        self._ip("-n", ns, "link", "set", ifname, "up")

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self._exec(ns, "sh", "-c", f"echo {value} > {path}")

    def _wait_line(self, proc: subprocess.Popen[str], what: str) -> str:
        from tests.netns.procs import first_line

        line = first_line(proc, READY_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"{what} did not start: {proc.communicate()[1]}")
        return line

    # -- building ---------------------------------------------------------------------------
    def start(self) -> NatLab:
        self.inet = self._add_ns("inet")
        self._bridge(self.inet, "br0", None)
        self.nft  # noqa: B018 - fail early, naming nftables, where it is missing
        return self

    def public(self, name: str) -> Host:
        """A host on the internet at 203.0.113.(100+i), no NAT in front."""
        if self._pub_next > 199:
            raise ValueError("at most 100 public hosts")
        addr = f"{INTERNET}.{self._pub_next}"
        self._pub_next += 1
        ns = self._add_ns(f"p-{self._role(name)}")
        self._plug(self.inet, "br0", ns, "eth0", f"{addr}/24")
        host = Host(self, name, ns, addr)
        self.publics.append(host)
        return host

    def _router_ns(self, kind: str, wan_bridge: tuple[str, str], wan_addr: str, prefix: int,
                   lan_prefix: str, gateway: str | None, ruleset_kind: str) -> str:  # fmt: skip
        ns = self._add_ns(f"r{len(self.routers)}-{kind[:4]}")
        self._plug(wan_bridge[0], wan_bridge[1], ns, "wan0", f"{wan_addr}/{prefix}")
        self._bridge(ns, "lan0", f"{lan_prefix}.1/24")
        if gateway is not None:
            self._ip("-n", ns, "route", "add", "default", "via", gateway)
        self._sysctl(ns, "net.ipv4.ip_forward", "1")
        rules = self._tmp / f"{ns}.nft"
        rules.write_text(_ruleset(ruleset_kind))
        proc = subprocess.run([self.ip, "netns", "exec", ns, self.nft, "-f", str(rules)],
                              capture_output=True, text=True, timeout=CMD_TIMEOUT_S)  # fmt: skip
        if proc.returncode != 0:
            raise NatLabUnavailable(
                f"nft could not load the {kind} router's ruleset (nftables "
                f"and a kernel with nf_tables needed): {proc.stderr.strip()}"
            )
        return ns

    def _next_wan(self) -> str:
        if self._wan_next > 99:
            raise ValueError("at most 90 routers on the internet")
        addr = f"{INTERNET}.{self._wan_next}"
        self._wan_next += 1
        return addr

    def _next_lan(self) -> str:
        if self._lan_next > 99:
            raise ValueError("at most 29 home LANs")
        prefix = f"192.168.{self._lan_next}"
        self._lan_next += 1
        return prefix

    def router(self, kind: RouterKind) -> Router:
        """A new home router of that kind with an empty LAN (add hosts with `home(router)`)."""
        if kind not in KINDS:
            raise ValueError(f"router kind {kind!r}: one of {', '.join(KINDS)}")
        if kind == "upnp":
            if not Path(MINIUPNPD).exists():
                raise NatLabUnavailable(f"{MINIUPNPD} is missing: apt-get install miniupnpd")
            self._stun_host()
        upstream: Router | None = None
        if kind == "double":
            n = self._cgnat_next
            self._cgnat_next += 1
            seg = f"100.64.{n}"
            cg_ns = self._router_ns("cgnat", (self.inet, "br0"), wan := self._next_wan(), 24,
                                    seg, None, "port-restricted")  # fmt: skip
            upstream = Router(self, "port-restricted", cg_ns, wan, seg)
            self.routers.append(upstream)
            lan = self._next_lan()
            ns = self._router_ns(kind, (cg_ns, "lan0"), f"{seg}.2", 24, lan, f"{seg}.1",
                                 "port-restricted")  # fmt: skip
            router = Router(self, kind, ns, f"{seg}.2", lan, upstream)
        else:
            wan, lan = self._next_wan(), self._next_lan()
            ns = self._router_ns(kind, (self.inet, "br0"), wan, 24, lan, None, kind)
            router = Router(self, kind, ns, wan, lan)
        self.routers.append(router)
        if kind == "upnp":
            self._miniupnpd(router)
        return router

    def home(self, kind: RouterKind | Router, name: str | None = None) -> Host:
        """A host behind a router: a new router of that kind, or the Router given."""
        router = kind if isinstance(kind, Router) else self.router(kind)
        name = self._role(name or f"h{len(self._names)}")
        addr = f"{router.lan_prefix}.{len(router.hosts) + 2}"
        ns = self._add_ns(f"h-{name}")
        self._plug(router.ns, "lan0", ns, "eth0", f"{addr}/24")
        self._ip("-n", ns, "route", "add", "default", "via", router.lan_addr)
        host = Host(self, name, ns, addr, router)
        router.hosts.append(host)
        return host

    def _stun_host(self) -> Host:
        """203.0.113.2: answers STUN Binding requests (miniupnpd's public-address check)."""
        if self._stun is None:
            ns = self._add_ns("stun")
            self._plug(self.inet, "br0", ns, "eth0", f"{STUN_ADDR}/24")
            self._stun = Host(self, "stun", ns, STUN_ADDR)
            proc = self._stun.popen([sys.executable, PROBE, "serve", "--udp", str(STUN_PORT),
                                     "--tcp", str(STUN_PORT)])  # fmt: skip
            self._wait_line(proc, "the lab's STUN responder")
        return self._stun

    def _miniupnpd(self, router: Router) -> None:
        """miniupnpd on the router's LAN. It refuses a reserved WAN address (203.0.113.0/24 is
        one) unless a STUN check says the address is public and unfiltered; the lab's STUN
        responder answers that check, so miniupnpd adds its DNAT and filter rules to the
        router's `inet filter` table (chains prerouting_miniupnpd, miniupnpd)."""
        conf = self._tmp / f"{router.ns}-miniupnpd.conf"
        conf.write_text("\n".join([
            "ext_ifname=wan0",
            "listening_ip=lan0",
            f"http_port={UPNP_HTTP_PORT}",
            "enable_natpmp=yes",
            "enable_upnp=yes",
            "secure_mode=yes",
            "system_uptime=yes",
            "ext_perform_stun=yes",
            f"ext_stun_host={STUN_ADDR}",
            f"ext_stun_port={STUN_PORT}",
            "upnp_table_name=filter",
            "upnp_nat_table_name=filter",
            f"uuid=00000000-0000-4000-8000-{secrets.token_hex(6)}",
            f"allow 1024-65535 {router.lan_prefix}.0/24 1024-65535",
            "deny 0-65535 0.0.0.0/0 0-65535",
        ]) + "\n")  # fmt: skip
        log = self._tmp / f"{router.ns}-miniupnpd.log"
        pid = self._tmp / f"{router.ns}-miniupnpd.pid"
        with log.open("w") as fh:
            proc = subprocess.Popen([self.ip, "netns", "exec", router.ns, MINIUPNPD, "-d",
                                     "-f", str(conf), "-P", str(pid)],
                                    stdout=fh, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self._procs.append(proc)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            text = log.read_text()
            if "Listening for NAT-PMP" in text and "HTTP listening" in text:
                if "Port forwarding is now enabled" not in text:
                    raise RuntimeError(f"miniupnpd did not enable port forwarding:\n{text}")
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"miniupnpd did not start:\n{log.read_text()}")

    def miniupnpd_log(self, router: Router) -> str:
        path = self._tmp / f"{router.ns}-miniupnpd.log"
        return path.read_text() if path.exists() else ""

    # -- teardown ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every process started in the lab, then delete every namespace made."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._procs.clear()
        errors = []
        for name in reversed(self._made):
            done = subprocess.run([self.ip, "netns", "del", name], capture_output=True,
                                  text=True, timeout=CMD_TIMEOUT_S)  # fmt: skip
            if done.returncode != 0:
                errors.append(f"{name}: {done.stderr.strip()}")
        self._made.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)
        if errors:
            raise RuntimeError(f"namespaces not deleted: {'; '.join(errors)}")


@contextlib.contextmanager
def nat_lab() -> Iterator[NatLab]:
    """The lab: the internet segment made; everything deleted on exit, whatever the exit."""
    lab = NatLab()
    try:
        yield lab.start()
    finally:
        lab.close()


@contextlib.contextmanager
def lab_for_test() -> Iterator[NatLab]:
    """`nat_lab()` for a test: where the lab cannot be built the test fails, saying what is
    missing (never a skip)."""
    import pytest

    try:
        with nat_lab() as built:
            yield built
    except NatLabUnavailable as exc:
        pytest.fail(f"the NAT lab cannot be built here: {exc}", pytrace=False)
