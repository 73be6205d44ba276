"""A private LAN of "hosts" made of network namespaces, for tests that need several machines.

`ip netns add` makes one namespace per host and one for a bridge; each host gets a veth pair
whose `eth0` end is in the host's namespace (with 10.77.0.N/24) and whose other end is a port of
the bridge, inside the bridge's namespace. Every address, link and route exists only inside
these namespaces: the machine's own interfaces and routes are never touched, so nothing a test
sends can leave. Namespace names carry a random suffix and are deleted on exit (the processes
started in them must be stopped first). Needs root and iproute2 (`ip`).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from types import TracebackType
from typing import Final

SUBNET: Final = "10.77.0"  # 10.77.0.N/24: private, and only inside the namespaces
IP_TIMEOUT_S: Final = 10.0  # one `ip` command; they take milliseconds


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here; the message says what is needed."""


class Lan:
    """Hosts ROLES on one bridge: `addr(role)` is 10.77.0.(index+1), `run_in(role)` the prefix
    that runs a command there."""

    def __init__(self, roles: list[str]) -> None:
        suffix = secrets.token_hex(3)
        self.roles = list(roles)
        self.bridge = f"sbt-br-{suffix}"
        self.ns = {role: f"sbt-{role[:6]}-{suffix}" for role in roles}
        self._made: list[str] = []
        ip = shutil.which("ip")
        if ip is None:
            raise NetnsUnavailable("`ip` is missing: apt-get install iproute2")
        self.ip = ip

    def addr(self, role: str) -> str:
        return f"{SUBNET}.{self.roles.index(role) + 1}"

    def run_in(self, role: str) -> list[str]:
        return [self.ip, "netns", "exec", self.ns[role]]

    def _ip(self, *args: str) -> None:
        proc = subprocess.run(
            [self.ip, *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")

    def _add_ns(self, name: str) -> None:
        proc = subprocess.run(
            [self.ip, "netns", "add", name], capture_output=True, text=True, timeout=IP_TIMEOUT_S
        )
        if proc.returncode != 0:
            raise NetnsUnavailable(
                f"`ip netns add` failed ({proc.stderr.strip()}): these tests make network "
                "namespaces of their own and need root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) "
                "and iproute2"
            )
        self._made.append(name)

    def create(self) -> Lan:
        """Make the namespaces, the bridge and the links (NetnsUnavailable if they cannot be)."""
        try:
            self._add_ns(self.bridge)
            br = ["-n", self.bridge]
            self._ip(*br, "link", "add", "br0", "type", "bridge")
            self._ip(*br, "link", "set", "br0", "up")
            for i, role in enumerate(self.roles):
                ns, port = self.ns[role], f"p{i}"
                self._add_ns(ns)
                self._ip(*br, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                         "netns", ns)  # fmt: skip
                self._ip(*br, "link", "set", port, "master", "br0", "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
                self._ip("-n", ns, "addr", "add", f"{self.addr(role)}/24", "dev", "eth0")
                self._ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Lan:
        return self if self._made else self.create()

    def close(self) -> None:
        """Delete every namespace made (their veth pairs and the bridge go with them)."""
        errors = []
        for name in reversed(self._made):
            proc = subprocess.run(
                [self.ip, "netns", "del", name], capture_output=True, text=True,
                timeout=IP_TIMEOUT_S,
            )  # fmt: skip
            if proc.returncode != 0:
                errors.append(f"{name}: {proc.stderr.strip()}")
        self._made.clear()
        if errors:
            raise RuntimeError(f"namespaces not deleted: {'; '.join(errors)}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
