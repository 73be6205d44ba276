"""The checks of `streembit-gateway doctor`: what is wrong with this installation, and the fix.

Each check returns `Check(name, status, detail, fix)`, status "ok", "warn" or "fail". Nothing
here changes anything: the fixes are printed for a person to run. Checks: the config file, the
state folder (permissions, owner, schema version, free space), the keys, owner and ACL, the
audit log, whether a gateway runs on the folder (and whether its config changed since), GPIO and
serial access for the Things that need them, the MQTT broker, the DHT, and the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import grp
import os
import pwd
import socket
import sqlite3
import stat
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, StreembitError
from gateway.ops import runinfo
from gateway.state import KEY_FILE, STATE_VERSION, StateDir

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

Status = Literal["ok", "warn", "fail"]

DEFAULT_CONFIG: Final = Path("/etc/streembit-gateway/gateway.toml")
SERVICE: Final = "streembit-gateway"
#: where a systemd unit of the gateway is installed (deploy/install.sh: the first)
UNIT_DIRS: Final = (
    Path("/etc/systemd/system"),
    Path("/usr/local/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/lib/systemd/system"),
)
BROKER_DEFAULT: Final = ("127.0.0.1", 1883)
CONNECT_TIMEOUT_S: Final = 2.0  # TCP and MQTT handshakes with local services
HTTP_TIMEOUT_S: Final = 3.0
DHT_TIMEOUT_S: Final = 5.0  # joining through the bootstrap nodes from a temporary node
LOW_SPACE_BYTES: Final = 50 * 1024 * 1024  # warn below this much free space for the state
EARLIEST_SANE_TIME: Final = 1_735_689_600  # 2025-01-01: a Pi without RTC before NTP sync


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _warn(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, "warn", detail, fix)


def _fail(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, "fail", detail, fix)


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _in_group(group: str) -> bool:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    return gid in os.getgroups() or gid == os.getegid()


# --------------------------------------------------------------------------- config
def _config_problem(exc: StreembitError) -> str:
    """A config error as a person reads it: `FILE: not an existing config file` rather than
    `FILE: (file): an existing config file` for the problems of the file itself."""
    if isinstance(exc, ConfigError) and exc.key == "(file)":
        return f"{exc.file}: not {exc.expected}"
    return str(exc)


def check_config(path: Path) -> tuple[list[Check], GatewayConfig | None]:
    checks: list[Check] = []
    try:
        cfg = load_config(path)
    except StreembitError as exc:
        return [
            _fail(
                "config",
                _config_problem(exc),
                f"edit {path}, then: streembit-gateway check-config {path}",
            )
        ], None
    checks.append(_ok("config", f"{path}: {len(cfg.things)} things"))
    try:
        st = os.stat(path)
    except OSError:
        return checks, cfg
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode) and mode & 0o002:
        checks.append(
            _fail(
                "config permissions",
                f"{path} is writable by everyone (mode {mode:o})",
                f"chmod 640 {path}",
            )
        )
    return checks, cfg


# --------------------------------------------------------------------------- state
def check_state(state_dir: Path) -> list[Check]:
    state = StateDir(state_dir)
    path = state.path
    if not path.is_dir():
        return [
            _fail(
                "state folder",
                f"{path} does not exist",
                f"sudo install -d -m 700 -o streembit -g streembit {path}",
            )
        ]
    checks: list[Check] = []
    try:
        state.check_permissions()
        checks.append(_ok("state permissions", f"{path}: folder and files private"))
    except StreembitError as exc:
        fix = str(exc).split("run: ", 1)[1] if "run: " in str(exc) else ""
        checks.append(_fail("state permissions", str(exc), fix))
    owner = os.stat(path).st_uid
    strangers = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid != owner:
                    strangers.append(entry.name)
    if strangers:
        try:
            owner_name = pwd.getpwuid(owner).pw_name
        except KeyError:
            owner_name = str(owner)
        checks.append(
            _fail(
                "state ownership",
                f"{', '.join(sorted(strangers))} not owned by the folder's owner ({owner_name}): "
                "the service cannot replace them",
                f"sudo chown -R {owner_name}: {path}",
            )
        )
    try:
        version = state.version()
    except StreembitError as exc:
        checks.append(_fail("state version", str(exc)))
    else:
        if version is None:
            checks.append(
                _warn(
                    "state version",
                    f"{path} is empty (no VERSION yet)",
                    f"streembit-gateway init --state {path}",
                )
            )
        elif version > STATE_VERSION:
            checks.append(
                _fail(
                    "state version",
                    f"version {version} is newer than this gateway's {STATE_VERSION}",
                    "install the newer gateway again (state is never downgraded)",
                )
            )
        elif version < STATE_VERSION:
            steps = "; ".join(m.summary for m in state.pending_migrations())
            checks.append(
                _warn(
                    "state version",
                    f"version {version}, migrated to {STATE_VERSION} at the next start ({steps})",
                    f"streembit-gateway migrate --state {path}",
                )
            )
        else:
            checks.append(_ok("state version", f"version {version} (current)"))
    try:
        st = os.statvfs(path)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if free is not None:
        from gateway.audit.log import MIN_FREE_BYTES

        mib = free / 1024 / 1024
        if free < MIN_FREE_BYTES:
            checks.append(
                _fail(
                    "disk space",
                    f"{mib:.1f} MiB free for {path}: the gateway "
                    "refuses every request (its audit log cannot be written)",
                    "free space on that file system (journalctl --vacuum-size, "
                    "apt-get clean, old files)",
                )
            )
        elif free < LOW_SPACE_BYTES:
            checks.append(
                _warn(
                    "disk space",
                    f"only {mib:.0f} MiB free for {path}",
                    "free space before the audit log fills it",
                )
            )
        else:
            checks.append(_ok("disk space", f"{mib:.0f} MiB free"))
    return checks


def check_keys(state_dir: Path) -> list[Check]:
    from gateway.acl import ACL_FILE, AclStore
    from gateway.identity import load_keypair

    path = Path(state_dir).absolute()
    key = path / KEY_FILE
    if not key.exists():
        return [
            _fail(
                "gateway key",
                f"{key} missing",
                f"sudo -u streembit streembit-gateway init --state {path}",
            )
        ]
    try:
        kp = load_keypair(key)
    except StreembitError as exc:
        fix = str(exc).split("run: ", 1)[1] if "run: " in str(exc) else ""
        return [_fail("gateway key", str(exc), fix)]
    checks = [_ok("gateway key", f"{key}: gateway id {kp.id}")]
    try:
        store = AclStore(path, kp.id)
    except StreembitError as exc:
        return [*checks, _fail("owner", str(exc))]
    if store.owner is None:
        checks.append(
            _warn(
                "owner",
                "not provisioned: nobody can use the gateway yet",
                f"streembit-gateway qr --state {path} (then claim it), or "
                f"streembit-gateway provision --state {path} --owner-key OWNER.pub",
            )
        )
        return checks
    checks.append(_ok("owner", f"owner {store.owner.id}"))
    acl_file = path / ACL_FILE
    if store.current is not None:
        checks.append(
            _ok(
                "ACL",
                f"version {store.current.version}, "
                f"{len(store.current.grants)} grants, signature valid",
            )
        )
    elif acl_file.exists():
        checks.append(
            _fail(
                "ACL",
                f"{acl_file} is refused (bad signature, another gateway's, "
                "or malformed): only the owner has access",
                "install a fresh ACL signed by the owner: streembit-gateway acl "
                "apply / streembit-peer acl push",
            )
        )
    else:
        checks.append(_ok("ACL", "none installed: only the owner has access"))
    return checks


def check_audit(state_dir: Path) -> list[Check]:
    from gateway.audit import AUDIT_FILE

    db = Path(state_dir) / AUDIT_FILE
    if not db.exists():
        return [_ok("audit log", f"{db} not created yet (made at the first start)")]
    try:
        uri = f"file:{db}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=CONNECT_TIMEOUT_S)) as conn:
            result = conn.execute("PRAGMA quick_check").fetchone()
            count = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    except sqlite3.Error as exc:
        return [
            _fail(
                "audit log",
                f"{db}: {exc}",
                "stop the gateway, move the file aside (keep it: it is evidence), start again",
            )
        ]
    if not result or result[0] != "ok":
        return [
            _fail(
                "audit log",
                f"{db}: integrity check failed: {result}",
                "stop the gateway, move the file aside, start again",
            )
        ]
    return [_ok("audit log", f"{count} records, integrity ok")]


# --------------------------------------------------------------------------- running
def service_installed(unit_dirs: Iterable[Path] | None = None) -> bool:
    """True when a systemd unit of the gateway is installed (deploy/install.sh), in one of
    UNIT_DIRS (the module's folders unless others are given)."""
    dirs = UNIT_DIRS if unit_dirs is None else unit_dirs
    return any((Path(d) / f"{SERVICE}.service").exists() for d in dirs)


def _how_to_start(
    state_dir: Path, config_path: Path | None, unit_dirs: Iterable[Path] | None
) -> str:
    if service_installed(unit_dirs):
        return f"sudo systemctl start {SERVICE} (logs: journalctl -u {SERVICE})"
    config = str(config_path) if config_path is not None else "FILE"
    return (
        f"no {SERVICE} service is installed: start it yourself, `deploy/dev.sh demo --state "
        f"{state_dir}` (the demo) or `streembit-gateway run --config {config} --state {state_dir}`"
    )


def check_running(
    state_dir: Path, config_path: Path | None, unit_dirs: Iterable[Path] | None = None
) -> tuple[list[Check], dict[str, Any]]:
    state = StateDir(state_dir)
    run = runinfo.read(state.path) or {}
    if not state.is_locked_elsewhere():
        return [
            _warn(
                "gateway",
                "not running on this state folder",
                _how_to_start(state_dir, config_path, unit_dirs),
            )
        ], {}
    checks = [_ok("gateway", f"running (pid {run.get('pid', '?')}) at {run.get('http', '?')}")]
    drift = runinfo.drift(run, config_path)
    if drift is not None:
        as_service = run.get("service")  # what the running gateway said of itself
        if not isinstance(as_service, bool):
            as_service = service_installed(unit_dirs)  # written by an older version
        restart = (
            f"sudo systemctl restart {SERVICE}"
            if as_service
            else "stop the gateway (Ctrl-C) and start it again"
        )
        checks.append(_warn("config changed", drift.message(), restart))
    url = str(run.get("http", ""))
    if url:
        try:
            with urllib.request.urlopen(  # noqa: S310 (our own http:// URL)
                f"{url}/.well-known/wot", timeout=HTTP_TIMEOUT_S
            ) as resp:
                checks.append(_ok("HTTP", f"{url} answers ({resp.status})"))
        except OSError as exc:
            checks.append(
                _fail("HTTP", f"{url} does not answer: {exc}", f"journalctl -u {SERVICE} -n 50")
            )
    return checks, run


def _metric(url: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310
            text = resp.read(1024 * 1024).decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            with contextlib.suppress(ValueError):
                return float(line.split()[1])
    return None


# --------------------------------------------------------------------------- devices
def _uses(cfg: GatewayConfig, driver: str) -> list[str]:
    return [t.name for t in cfg.things if t.driver == driver]


def check_gpio(cfg: GatewayConfig, dev: Path = Path("/dev")) -> list[Check]:
    users = [
        t.name
        for t in cfg.things
        if t.driver == "gpio" and str(t.driver_settings.get("pin_factory", "")) != "mock"
    ]
    chips = sorted(glob.glob(str(dev / "gpiochip*")))
    if not users:
        return [_ok("GPIO", "no Thing uses GPIO")]
    if not chips:
        return [
            _fail(
                "GPIO",
                f"{', '.join(users)} use GPIO but there is no {dev}/gpiochip*",
                "run on a Raspberry Pi (or a board with a GPIO character device)",
            )
        ]
    denied = [c for c in chips if not os.access(c, os.R_OK | os.W_OK)]
    if denied:
        return [
            _fail(
                "GPIO",
                f"{_user()} cannot open {', '.join(denied)}",
                f"sudo usermod -aG gpio {_user()} (and restart the service); Debian "
                "without the gpio group: deploy/install.sh adds a udev rule for it",
            )
        ]
    return [
        _ok(
            "GPIO",
            f"{', '.join(Path(c).name for c in chips)} readable and writable "
            f"(for {', '.join(users)})",
        )
    ]


def _serial_ports(cfg: GatewayConfig) -> dict[str, list[str]]:
    ports: dict[str, list[str]] = {}
    for t in cfg.things:
        port = None
        if t.driver == "serial":
            port = t.driver_settings.get("port")
        elif t.driver == "companion":
            port = t.driver_settings.get("serial")
        if isinstance(port, str) and port:
            ports.setdefault(port, []).append(t.name)
    return ports


def check_serial(cfg: GatewayConfig) -> list[Check]:
    ports = _serial_ports(cfg)
    if not ports:
        return [_ok("serial", "no Thing uses a serial port")]
    checks: list[Check] = []
    for port, things in sorted(ports.items()):
        p = Path(port)
        who = ", ".join(things)
        if not p.exists():
            checks.append(
                _fail(
                    "serial",
                    f"{port} (for {who}) is missing",
                    "plug the adapter in; ls -l /dev/serial/by-id/ shows the stable "
                    "name to put in the config",
                )
            )
        elif not stat.S_ISCHR(p.stat().st_mode):
            checks.append(_fail("serial", f"{port} (for {who}) is not a character device"))
        elif not os.access(p, os.R_OK | os.W_OK):
            checks.append(
                _fail(
                    "serial",
                    f"{_user()} cannot open {port} (for {who})",
                    f"sudo usermod -aG dialout {_user()} (and restart the service)",
                )
            )
        else:
            checks.append(_ok("serial", f"{port} readable and writable (for {who})"))
    return checks


# --------------------------------------------------------------------------- broker
#: CONNACK reason codes (paho's MQTT 5 numbering, also for 3.1.1) that mean "who are you?"
LOGIN_REFUSED: Final = frozenset({134, 135})  # bad user name or password; not authorised


def mqtt_probe(
    host: str, port: int, user: str | None = None, password: str | None = None
) -> ReasonCode:
    """The broker's answer to an MQTT 3.1.1 CONNECT (paho; `.is_failure`, `.value`, str: the
    reason); OSError when nothing answers within CONNECT_TIMEOUT_S. Blocking: doctor is a
    command, and `run_checks` is never called from an event loop."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"doctor-{os.getpid()}",
        protocol=paho.MQTTv311,
        reconnect_on_failure=False,  # no retries, no MQTT 3.1 downgrade: one plain answer
    )
    client.connect_timeout = CONNECT_TIMEOUT_S
    if user is not None:
        client.username_pw_set(user, password)
    answers: list[ReasonCode] = []

    def on_connect(
        c: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        answers.append(reason)

    client.on_connect = on_connect
    client.connect(host, port, keepalive=10)  # OSError: refused, unreachable, timed out
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        while not answers:
            rc = client.loop(timeout=0.1)
            if answers:
                break
            if rc != paho.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"the broker ended the handshake: {paho.error_string(rc)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CONNACK within {CONNECT_TIMEOUT_S:g} s")
        if not answers[0].is_failure:
            client.disconnect()
            client.loop(timeout=0.1)  # sends the DISCONNECT
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()
    return answers[0]


def check_broker(cfg: GatewayConfig | None, state_dir: Path) -> list[Check]:
    targets: list[tuple[str, int, bool]] = []
    if cfg is not None:
        for t in cfg.things:
            broker = t.driver_settings.get("broker") if t.driver == "companion" else None
            if isinstance(broker, str):
                with contextlib.suppress(Exception):
                    from device_drivers.companion.mqtt import parse_broker

                    targets.append(parse_broker(broker))
    needed = bool(targets)
    if not targets:
        targets = [(*BROKER_DEFAULT, False)]
    creds: Any = None
    with contextlib.suppress(Exception):
        from gateway.companion.broker import load_credentials

        creds = load_credentials(StateDir(state_dir))
    checks: list[Check] = []
    for host, port, tls in dict.fromkeys(targets):
        where = f"{host}:{port}"
        try:
            if tls:
                with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                    pass
                checks.append(
                    _ok("broker", f"{where} accepts connections (TLS, login not checked here)")
                )
                continue
            user = creds.username if creds else None
            answer = mqtt_probe(host, port, user, creds.password if creds else None)
        except OSError as exc:
            status = _fail if needed else _warn
            checks.append(
                status(
                    "broker",
                    f"no MQTT broker at {where}: {exc}",
                    "sudo apt-get install mosquitto && sudo systemctl enable --now "
                    "mosquitto (deploy/install.sh does both)",
                )
            )
            continue
        if not answer.is_failure:
            login = f"as {creds.username}" if creds else "anonymously"
            if creds:
                checks.append(_ok("broker", f"{where} accepts a login {login}"))
            else:
                checks.append(
                    _warn(
                        "broker",
                        f"{where} accepts a login {login}",
                        "the broker allows anonymous clients: set allow_anonymous false",
                    )
                )
        elif creds is None and answer.value in LOGIN_REFUSED:
            checks.append(
                _ok(
                    "broker",
                    f"{where} is up and refuses anonymous clients (no companion boards paired yet)",
                )
            )
        else:
            checks.append(
                _fail(
                    "broker",
                    f"{where} refused the gateway's login: {answer}",
                    "rewrite the broker config (companion pairing) and restart mosquitto",
                )
            )
    return checks


# --------------------------------------------------------------------------- DHT
async def _dht_join(host: str, bootstrap: Iterable[tuple[str, int]]) -> int:
    from gateway.p2p import DhtNode

    # a throwaway node on the gateway's own DHT address (any free port), so it reaches what
    # the gateway would reach
    node = DhtNode(host, 0, bootstrap=list(bootstrap), rpc_timeout=1.0)
    await node.start()
    try:
        return await asyncio.wait_for(node.bootstrap(node.bootstrap_addrs), DHT_TIMEOUT_S)
    except TimeoutError:
        return node.routing_size()
    finally:
        await node.stop()


def check_dht(cfg: GatewayConfig, run: dict[str, Any]) -> list[Check]:
    p2p = cfg.p2p
    if not p2p.enabled:
        return [_ok("DHT", "P2P is off in the config (LAN and HTTP only)")]
    url = str(run.get("http", ""))
    if url:
        peers = _metric(url, "streembit_dht_peers")
        if peers is not None:
            if peers > 0:
                return [_ok("DHT", f"the running gateway knows {int(peers)} DHT peers")]
            if not p2p.bootstrap:
                return [
                    _warn(
                        "DHT",
                        "the running gateway is the only DHT node it knows",
                        'add [gateway.p2p] bootstrap = ["HOST:PORT"] of a node peers '
                        "also join through",
                    )
                ]
            return [
                _fail(
                    "DHT",
                    "the running gateway has no DHT peers although bootstrap "
                    f"nodes are set ({', '.join(f'{h}:{p}' for h, p in p2p.bootstrap)})",
                    "check that they run and that UDP reaches them",
                )
            ]
    if not p2p.bootstrap:
        return [
            _warn(
                "DHT",
                "no bootstrap nodes: this gateway starts a network of its own",
                'add [gateway.p2p] bootstrap = ["HOST:PORT"]',
            )
        ]
    try:
        size = asyncio.run(_dht_join(p2p.dht_host, p2p.bootstrap))
    except (OSError, StreembitError) as exc:
        return [_fail("DHT", f"cannot start a test DHT node: {exc}")]
    if size > 0:
        return [_ok("DHT", f"joined through the bootstrap nodes: {size} peers")]
    return [
        _fail(
            "DHT",
            f"no bootstrap node answered ({', '.join(f'{h}:{p}' for h, p in p2p.bootstrap)})",
            "check that they run and that UDP reaches them (firewall)",
        )
    ]


# --------------------------------------------------------------------------- clock
def check_clock(now: Callable[[], float] = time.time) -> list[Check]:
    t = now()
    if t < EARLIEST_SANE_TIME:
        return [
            _fail(
                "clock",
                f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(t))}: "
                "tokens, ACL validity and schedules need the right time",
                "enable time sync: sudo timedatectl set-ntp true (a Pi has no RTC)",
            )
        ]
    return [_ok("clock", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t)))]


# --------------------------------------------------------------------------- all
def _no_default_config(state_dir: Path | None) -> tuple[list[Check], Path | None]:
    """No --config and nothing at DEFAULT_CONFIG: a dev demo (`streembit-gateway demo --state
    DIR`) runs without a file. Check the file a gateway running on DIR loaded, if any; else say
    there is none (not a failure when a state folder was given)."""
    if state_dir is None:
        return [
            _fail(
                "config",
                f"no config file at {DEFAULT_CONFIG}",
                "give --config FILE, or --state DIR for a gateway run without one (the demo)",
            )
        ], None
    loaded = runinfo.config_file(str((runinfo.read(state_dir) or {}).get("config") or ""))
    if loaded is not None:
        return [], loaded
    return [
        _ok("config", f"none ({DEFAULT_CONFIG} does not exist; the demo runs without one)")
    ], None


def run_checks(config_path: Path | None, state_override: Path | None = None) -> list[Check]:
    """Every check. CONFIG_PATH None: DEFAULT_CONFIG if it exists (an installed gateway)."""
    if config_path is None:
        config_path = DEFAULT_CONFIG
        if not DEFAULT_CONFIG.exists():
            found, loaded = _no_default_config(state_override)
            if loaded is None:
                return _checks_without_config(found, state_override)
            config_path = loaded
    checks, cfg = check_config(config_path)
    state_dir = state_override or (cfg.state_dir if cfg else None)
    if state_dir is None:
        return checks
    checks += check_state(state_dir)
    if Path(state_dir).is_dir():
        checks += check_keys(state_dir)
        checks += check_audit(state_dir)
    running, run = check_running(state_dir, config_path) if Path(state_dir).is_dir() else ([], {})
    checks += running
    if cfg is not None:
        checks += check_gpio(cfg)
        checks += check_serial(cfg)
        checks += check_dht(cfg, run)
    checks += check_broker(cfg, state_dir)
    checks += check_clock()
    return checks


def _checks_without_config(checks: list[Check], state_dir: Path | None) -> list[Check]:
    """The checks that need no config file: the state folder, keys, audit log, the running
    gateway and its HTTP, the clock."""
    if state_dir is None:
        return checks
    checks += check_state(state_dir)
    if not Path(state_dir).is_dir():
        return checks
    checks += check_keys(state_dir)
    checks += check_audit(state_dir)
    running, _run = check_running(state_dir, None)
    checks += running
    checks += check_clock()
    return checks
