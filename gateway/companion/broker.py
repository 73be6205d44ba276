"""The mosquitto configuration the gateway needs, written atomically into a folder the user names.

Files in that folder (docs/companion.md, section 6):

    streembit.conf   listener(s), TLS with the gateway's broker certificate, no anonymous access,
                     the password and ACL files below, a packet size limit
    passwd           one line per account, mosquitto 2.0's PBKDF2-SHA512 format
                     (`user:$7$101$<salt b64>$<hash b64>`, 12-byte salt, 101 iterations), made here
                     with hashlib so no password ever appears on a command line
    acl              the gateway's account: readwrite `streembit/<gateway id>/#` and the discovery
                     prefix; each board `companion-<device>`: write its own .../up and .../status,
                     read its own .../down, nothing else; each reader: read the Things' topics
    certs/broker.crt, certs/broker.key
                     a self-signed P-256 certificate for the broker's host names and addresses,
                     made once and kept (boards pin it: a new one means pairing every board again)

The gateway's own broker account and the readers' passwords are kept in the state folder
(`mqtt-broker.json`, 0600) so the running gateway can log in. Rewriting is idempotent: the
accounts keep their passwords; only new boards and readers are added.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from device_drivers.companion.broker import topic_root
from gateway import jsonsafe
from gateway.errors import ProvisioningError
from gateway.provisioning import pairing
from gateway.state import StateDir
from gateway.storage import atomic_write_text

CREDENTIALS_FILE = "mqtt-broker.json"
CONF_FILE = "streembit.conf"
PASSWD_FILE = "passwd"  # noqa: S105 - a file name
ACL_FILE = "acl"
CERT_FILE = "certs/broker.crt"
KEY_FILE = "certs/broker.key"
GATEWAY_USER = "streembit-gateway"
READER_PREFIX = "reader-"
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes ($7$101$...)
SALT_BYTES = 12
CERT_DAYS = 3650
MAX_PACKET = 8192  # bytes; a frame is at most 1.1 KiB, a TD-sized retained value a few KiB
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def things_root(gateway_id: str) -> str:
    """Prefix of the W3C MQTT binding topics: `{root}/{thing}/properties/{p}`, `/events/{e}`."""
    return f"streembit/{gateway_id}/things"


def gateway_root(gateway_id: str) -> str:
    return f"streembit/{gateway_id}"


def password_line(user: str, password: str, salt: bytes | None = None) -> str:
    """One passwd line in mosquitto 2.0's format ($7$ = PBKDF2-HMAC-SHA512)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"{user}:$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


@dataclass(frozen=True)
class BrokerCredentials:
    username: str
    password: str
    ca_file: str
    readers: dict[str, str]

    def __repr__(self) -> str:  # never print a password
        return f"BrokerCredentials(username={self.username!r}, ca_file={self.ca_file!r})"


def load_credentials(state: StateDir | Path) -> BrokerCredentials | None:
    path = (state.path if isinstance(state, StateDir) else Path(state)) / CREDENTIALS_FILE
    try:
        doc = jsonsafe.loads(path.read_bytes(), jsonsafe.FILE_LIMITS)
        return BrokerCredentials(
            str(doc["gateway"]["username"]),
            str(doc["gateway"]["password"]),
            str(doc["ca_file"]),
            {str(k): str(v) for k, v in dict(doc.get("readers", {})).items()},
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProvisioningError(f"{path}: damaged ({exc}); fix or delete it") from None


def _hosts_san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_certificate(hosts: Sequence[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): self-signed P-256, for HOSTS (names or addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streembit gateway broker")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(_hosts_san(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def cert_hosts(cert_pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )


@dataclass(frozen=True)
class BrokerFiles:
    folder: Path
    conf: Path
    passwd: Path
    acl: Path
    cert: Path
    key: Path
    users: tuple[str, ...]
    cert_created: bool


def write_broker_config(
    state: StateDir | Path,
    folder: Path,
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    port: int = 8883,
    bind: str = "0.0.0.0",  # noqa: S104 - boards on the LAN connect to the broker on the Pi
    plain_port: int | None = None,
    readers: Sequence[str] = (),
    discovery_prefix: str = "homeassistant",
    extra: Sequence[str] = (),
    owner: str | None = None,
) -> BrokerFiles:
    """Write the broker's files into FOLDER (see the module docstring).

    `plain_port` adds a plain-TCP listener on 127.0.0.1 only (for local tools and tests).
    `extra` lines are appended verbatim to the conf (tests: `user root`, `persistence false`).
    `owner` (e.g. "mosquitto"): the user the secret files are given to, so the broker can read
    them after it drops root (mode 0600 stays)."""
    st = state if isinstance(state, StateDir) else StateDir(Path(state))
    gateway_id = st.load_identity().id
    folder = Path(folder).absolute()
    if not 0 < port < 65536 or (plain_port is not None and not 0 < plain_port < 65536):
        raise ProvisioningError("broker ports must be 1..65535", code="bad_broker")
    for name in readers:
        if not USER_RE.fullmatch(READER_PREFIX + name):
            raise ProvisioningError(f"bad reader name {name!r}", code="bad_broker")
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    created = False
    if cert_path.exists() and key_path.exists():
        missing = set(hosts) - cert_hosts(cert_path.read_bytes())
        if missing:
            raise ProvisioningError(
                f"{cert_path} does not cover {', '.join(sorted(missing))}; boards pin this "
                "certificate, so it is not replaced: delete it and pair every board again",
                code="bad_broker",
            )
    else:
        cert_pem, key_pem = make_certificate(list(hosts))
        atomic_write_text(key_path, key_pem.decode(), mode=0o600)
        atomic_write_text(cert_path, cert_pem.decode(), mode=0o644)
        created = True

    old = load_credentials(st)
    gw_password = old.password if old is not None else secrets.token_urlsafe(24)
    reader_pw = dict(old.readers) if old is not None else {}
    for name in readers:
        reader_pw.setdefault(name, secrets.token_urlsafe(24))
    creds: dict[str, Any] = {
        "v": 1,
        "gateway": {"username": GATEWAY_USER, "password": gw_password},
        "readers": reader_pw,
        "ca_file": str(cert_path),
        "conf_dir": str(folder),
        # how this folder was written, so pairing a board can rewrite it the same way
        "conf": {
            "hosts": list(hosts),
            "port": port,
            "bind": bind,
            "plain_port": plain_port,
            "discovery_prefix": discovery_prefix,
            "extra": list(extra),
            "owner": owner,
        },
    }
    atomic_write_text(st.path / "mqtt-broker.json", json.dumps(creds, indent=1) + "\n")

    accounts: list[tuple[str, str]] = [(GATEWAY_USER, gw_password)]
    root = gateway_root(gateway_id)
    comp = topic_root(gateway_id)
    acl = [
        "# written by streembit-gateway; rewritten on every pairing",
        f"user {GATEWAY_USER}",
        f"topic readwrite {root}/#",
        f"topic readwrite {discovery_prefix}/#",
        "",
    ]
    for device in pairing.list_pairings(st):
        rec = pairing.companion_pairing(st, device, _first(hosts), port)
        accounts.append((rec["username"], rec["password"]))
        acl += [
            f"user {rec['username']}",
            f"topic write {comp}/{device}/up",
            f"topic write {comp}/{device}/status",
            f"topic read {comp}/{device}/down",
            "",
        ]
    for name, pw in sorted(reader_pw.items()):
        accounts.append((READER_PREFIX + name, pw))
        acl += [
            f"user {READER_PREFIX}{name}",
            f"topic read {things_root(gateway_id)}/#",
            f"topic read {root}/status",
            f"topic read {discovery_prefix}/#",
            "",
        ]
    passwd_path, acl_path, conf_path = folder / PASSWD_FILE, folder / ACL_FILE, folder / CONF_FILE
    atomic_write_text(passwd_path, "".join(password_line(u, p) + "\n" for u, p in accounts))
    atomic_write_text(acl_path, "\n".join(acl), mode=0o600)
    conf = [
        "# written by streembit-gateway companion broker; rewritten on every pairing",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {passwd_path}",
        f"acl_file {acl_path}",
        f"max_packet_size {MAX_PACKET}",
        "max_queued_messages 200",
        # small frames both ways: without this, Nagle + delayed ACKs add ~40 ms per hop
        "set_tcp_nodelay true",
        "",
        f"listener {port} {bind}",
        f"certfile {cert_path}",
        f"keyfile {key_path}",
        "tls_version tlsv1.2",
    ]
    if plain_port is not None:
        conf += ["", f"listener {plain_port} 127.0.0.1"]
    conf += [*extra]
    atomic_write_text(conf_path, "\n".join(conf) + "\n", mode=0o644)
    if owner is not None:
        import pwd

        try:
            pw_ent = pwd.getpwnam(owner)
        except KeyError:
            raise ProvisioningError(f"no user {owner!r} to own the broker files") from None
        for path in (passwd_path, acl_path, key_path):
            os.chown(path, pw_ent.pw_uid, pw_ent.pw_gid)
    return BrokerFiles(
        folder,
        conf_path,
        passwd_path,
        acl_path,
        cert_path,
        key_path,
        tuple(u for u, _ in accounts),
        created,
    )


def rewrite_broker_config(state: StateDir | Path) -> BrokerFiles | None:
    """Write the broker folder again as it was last written (after a board was paired), or
    None when the gateway has no broker folder yet."""
    st = state if isinstance(state, StateDir) else StateDir(Path(state))
    path = st.path / CREDENTIALS_FILE
    try:
        doc = jsonsafe.loads(path.read_bytes(), jsonsafe.FILE_LIMITS)
        conf = doc["conf"]
        folder = Path(doc["conf_dir"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProvisioningError(f"{path}: damaged ({exc}); fix or delete it") from None
    return write_broker_config(
        st,
        folder,
        hosts=tuple(conf["hosts"]),
        port=int(conf["port"]),
        bind=str(conf["bind"]),
        plain_port=conf.get("plain_port"),
        discovery_prefix=str(conf.get("discovery_prefix", "homeassistant")),
        extra=tuple(conf.get("extra", ())),
        owner=conf.get("owner"),
    )


def _first(hosts: Sequence[str]) -> str:
    if not hosts:
        raise ProvisioningError("name at least one broker host", code="bad_broker")
    return hosts[0]
