# The companion's main loop: Wi-Fi, the link (MQTT or USB serial), the authenticated session,
# reports, commands, the watchdog and the safe state. main.py calls main() on the board; tests
# call run()/Companion with shims for machine, network, the MQTT client class and the clock.
#
# Config: companion.json, written by `streembit-gateway companion pair` (docs/companion.md).

import json

import board as board_mod
import counter as counter_mod
import frames
import link as link_mod

try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython (tests, bench)
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def sleep_ms(ms):
        _time.sleep(ms / 1000)


try:
    from os import urandom
except ImportError:  # ports without os.urandom (the WebAssembly test port; ESP32 has it)
    import random

    def urandom(n):
        return bytes(random.getrandbits(8) for _ in range(n))

FIRMWARE = "1.0"
CONFIG_FILE = "companion.json"
COUNTER_FILE = "counter"
DEFAULTS = {
    "link": "mqtt",
    "report_ms": 5000,  # a report at least this often (and at once on a change)
    "link_timeout_ms": 15000,  # no valid gateway frame for this long: outputs to the safe state
    "wdt_ms": 30000,  # hardware watchdog
    "backoff_min_ms": 500,  # reconnect backoff: capped, jittered
    "backoff_max_ms": 30000,
    "hello_retry_ms": 2000,  # resend our hello while the gateway has not answered
    "wifi_timeout_ms": 20000,
    "counter_block": 256,
    "max_rx_per_s": 50,  # frames from the link beyond this rate are dropped unchecked
}
LOG_EVERY_MS = 10000  # refusals are logged at most this often (with counts)


def rand(n):
    return int.from_bytes(urandom(2), "big") % n if n > 0 else 0


def unhex(text):
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


def load_config(text):
    """The parsed, checked config (a dict); ValueError naming the first problem."""
    cfg = json.loads(text)
    if not isinstance(cfg, dict) or cfg.get("v") != 1:
        raise ValueError("config: not a version 1 companion config")
    for key in ("device", "gateway", "key", "channels"):
        if key not in cfg:
            raise ValueError("config: " + key + " missing")
    out = dict(DEFAULTS)
    out.update(cfg)
    if out["link"] not in ("mqtt", "serial"):
        raise ValueError("config: link must be mqtt or serial")
    if len(out["key"]) != 64:
        raise ValueError("config: key must be 64 hex digits")
    out["key_bytes"] = unhex(out["key"])
    if out["link"] == "mqtt":
        for key in ("broker", "username", "password", "topic"):
            if key not in out:
                raise ValueError("config: " + key + " missing")
    out.setdefault("client_id", "companion-" + out["device"])
    for key in DEFAULTS:
        if key != "link" and (not isinstance(out[key], int) or out[key] <= 0):
            raise ValueError("config: " + key + " must be a positive integer")
    return out


def pem_to_der(pem):
    lines = [ln.strip() for ln in pem.strip().splitlines()]
    body = "".join(ln for ln in lines if ln and not ln.startswith("-----"))
    import binascii

    return binascii.a2b_base64(body)


class Tls:
    """An SSL context for umqtt.simple: verifies the broker's certificate against the gateway's
    (pinned, from the config) and checks the host name."""

    def __init__(self, ssl, ca_pem):
        self.ssl = ssl
        self.der = pem_to_der(ca_pem)
        self.ca_pem = ca_pem
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cadata=self.der)
        except (TypeError, ValueError):  # CPython wants PEM text or DER bytes
            ctx.load_verify_locations(cadata=ca_pem)
        self.ctx = ctx

    def wrap_socket(self, sock, server_hostname=None):
        return self.ctx.wrap_socket(sock, server_hostname=server_hostname)

    def legacy_params(self):
        return {"cert_reqs": self.ssl.CERT_REQUIRED, "cadata": self.der}


class Companion:
    """One board: call step() forever (run() does). Every dependency is injected."""

    def __init__(self, cfg, machine, link, counter, modules=None, clock=ticks_ms, log=print):
        self.cfg = cfg
        self.clock = clock
        self.log = log
        self.board = board_mod.Board(cfg["channels"], machine, modules)  # outputs safe first
        self.wdt = None
        if cfg.get("watchdog", True):
            self.wdt = machine.WDT(timeout=cfg["wdt_ms"])
        self.link = link
        self.session = frames.Session(cfg["key_bytes"], cfg["device"], frames.UP, counter, urandom)
        self.backoff = link_mod.Backoff(cfg["backoff_min_ms"], cfg["backoff_max_ms"], rand)
        now = clock()
        self.retry_at = now
        self.last_rx = now  # last valid gateway frame (outputs are safe at boot anyway)
        self.last_report = None
        self.last_hello = None
        self.last_values = None
        self.is_safe = True
        self.last_cmd = None  # (id, ack payload) of the last command, for retransmissions
        self.refused = {}
        self.last_log = None
        self.rx_window = (now, 0)
        self.stats = {"connects": 0, "commands": 0, "refused": 0, "dropped": 0, "safe": 0}

    # -- the loop
    def step(self, wait_ms=50):
        if self.wdt is not None:
            self.wdt.feed()
        now = self.clock()
        if not self.link.up:
            if ticks_diff(now, self.retry_at) >= 0:
                self._connect(now)
            else:
                sleep_ms(min(wait_ms, max(1, ticks_diff(self.retry_at, now))))
        else:
            try:
                self._exchange(now, wait_ms)
            except link_mod.LinkDown as exc:
                self._lost(self.clock(), str(exc))
        now = self.clock()
        if ticks_diff(now, self.last_rx) > self.cfg["link_timeout_ms"] and not self.is_safe:
            self._go_safe("no valid frame from the gateway for %d ms" % self.cfg["link_timeout_ms"])
        if self.refused and (
            self.last_log is None or ticks_diff(now, self.last_log) > LOG_EVERY_MS
        ):
            self.log("companion: refused frames " + repr(self.refused))
            self.refused = {}
            self.last_log = now

    def run(self):
        while True:
            self.step()

    # -- internals
    def _connect(self, now):
        try:
            self.link.connect()
        except Exception as exc:  # any failure means: retry later
            delay = self.backoff.next_ms()
            self.retry_at = ticks_add(self.clock(), delay)
            self.log("companion: link down (%s); retry in %d ms" % (exc, delay))
            return
        self.backoff.reset()
        self.stats["connects"] += 1
        self.log("companion: link up")
        self.session.pending = None
        self._hello(self.clock())

    def _lost(self, now, why):
        self.link.close()
        delay = self.backoff.next_ms()
        self.retry_at = ticks_add(now, delay)
        self.log("companion: link lost (%s); retry in %d ms" % (why, delay))

    def _hello(self, now):
        self.last_hello = now
        extra = {"ch": self.board.describe(), "fw": FIRMWARE, "lt": self.cfg["link_timeout_ms"]}
        self.link.send(self.session.hello(extra))

    def _exchange(self, now, wait_ms):
        for frame in self.link.poll(wait_ms):
            self._receive(frame)
        now = self.clock()
        if not self.session.ready:
            if ticks_diff(now, self.last_hello) > self.cfg["hello_retry_ms"]:
                self._hello(now)
            return
        values = self._fast()
        due = self.last_report is None or ticks_diff(now, self.last_report) >= self.cfg["report_ms"]
        if due or values != self.last_values:
            self._report(now)
        self.link.keepalive(now)

    def _fast(self):
        """Outputs and digital inputs, read every loop turn so a change is reported at once."""
        values = {}
        for name in self.board.channels:
            if self.board.kinds[name] in ("relay", "input"):
                try:
                    values[name] = self.board.channels[name].read()
                except Exception:
                    values[name] = None
        return values

    def _report(self, now):
        values, errors = self.board.snapshot()
        payload = {"v": values}
        if errors:
            payload["e"] = errors
        self.link.send(self.session.seal("R", payload), False)
        self.last_report = now
        self.last_values = self._fast()

    def _flooded(self, now):
        start, count = self.rx_window
        if ticks_diff(now, start) >= 1000:
            self.rx_window = (now, 1)
            return False
        self.rx_window = (start, count + 1)
        return count + 1 > self.cfg["max_rx_per_s"]

    def _receive(self, frame):
        now = self.clock()
        if self._flooded(now):
            self.stats["dropped"] += 1
            self.refused["flood"] = self.refused.get("flood", 0) + 1
            return
        try:
            kind, obj = self.session.open(frame)
        except frames.FrameError as exc:
            self.stats["refused"] += 1
            self.refused[exc.code] = self.refused.get(exc.code, 0) + 1
            if exc.code == frames.NO_SESSION and ticks_diff(now, self.last_hello) > 500:
                self._hello(now)
            return
        self.last_rx = now
        if kind == "H":
            self.link.send(self.session.welcome(obj["n"]))
        elif kind == "W":
            self.is_safe = False
            self._report(now)
        elif kind == "C":
            self.is_safe = False
            self._command(obj)
        elif kind == "K":
            self.is_safe = False

    def _command(self, obj):
        cid = obj.get("id")
        if not isinstance(cid, int) or isinstance(cid, bool):
            return
        if self.last_cmd is not None and self.last_cmd[0] == cid:
            self.link.send(self.session.seal("A", self.last_cmd[1]))  # retransmission: no redo
            return
        self.stats["commands"] += 1
        ack = {"id": cid, "ok": True}
        sets = obj.get("set")
        try:
            if sets is not None:
                if not isinstance(sets, dict):
                    raise ValueError("set must be an object")
                for name in sets:
                    self.board.set(name, sets[name])
        except (KeyError, ValueError) as exc:
            ack = {"id": cid, "ok": False, "e": str(exc)[:80]}
        values, errors = self.board.snapshot()
        ack["v"] = values
        if errors:
            ack["err"] = errors
        self.last_cmd = (cid, ack)
        self.link.send(self.session.seal("A", ack))
        self.last_values = self._fast()

    def _go_safe(self, why):
        self.is_safe = True
        self.stats["safe"] += 1
        if self.board.to_safe():
            self.log("companion: outputs to safe state: " + why)
        if self.link.up and self.session.ready:
            try:
                self._report(self.clock())
            except link_mod.LinkDown:
                pass


def make_link(cfg, mqtt_cls=None, ssl=None, serial=None):
    if cfg["link"] == "serial":
        rx, tx = serial
        return link_mod.SerialLink(rx, tx)
    tls = None
    if cfg["broker"].get("tls", True):
        tls = Tls(ssl, cfg["broker"]["ca"])
    return link_mod.MqttLink(cfg, mqtt_cls, tls, ticks_ms)


def join_wifi(network, cfg, wdt_feed):
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        return wlan
    wifi = cfg.get("wifi") or {}
    wlan.connect(wifi.get("ssid", ""), wifi.get("password", ""))
    start = ticks_ms()
    while not wlan.isconnected():
        wdt_feed()
        if ticks_diff(ticks_ms(), start) > cfg["wifi_timeout_ms"]:
            raise OSError("Wi-Fi join timed out")
        sleep_ms(100)
    return wlan


def main():  # pragma: no cover - runs on the board
    import machine
    import sys

    with open(CONFIG_FILE) as fh:
        cfg = load_config(fh.read())
    counter = counter_mod.Counter(COUNTER_FILE, cfg["counter_block"])
    if cfg["link"] == "mqtt":
        import network
        import ssl
        from umqtt.simple import MQTTClient

        link = make_link(cfg, MQTTClient, ssl)
    else:
        link = make_link(cfg, serial=(sys.stdin.buffer, sys.stdout.buffer))
    comp = Companion(cfg, machine, link, counter)
    backoff = link_mod.Backoff(cfg["backoff_min_ms"], cfg["backoff_max_ms"], rand)
    while True:
        try:
            if cfg["link"] == "mqtt":
                join_wifi(network, cfg, comp.wdt.feed if comp.wdt else (lambda: None))
            backoff.reset()
            while True:
                comp.step()
                if cfg["link"] == "mqtt" and not network.WLAN(network.STA_IF).isconnected():
                    raise OSError("Wi-Fi lost")
        except OSError as exc:
            comp.link.close()
            comp._go_safe(str(exc))
            delay = backoff.next_ms()
            print("companion: %s; retry in %d ms" % (exc, delay))
            waited = 0
            while waited < delay:
                if comp.wdt:
                    comp.wdt.feed()
                sleep_ms(100)
                waited += 100
