# The board's two links to the gateway, carrying the same frames (frames.py):
#   MqttLink    umqtt.simple (micropython-lib) to the mosquitto broker on the gateway, over TLS
#   SerialLink  USB serial: one frame per line, "~SB" + base64(frame) + "\n"; other lines
#               (REPL output, prints) are ignored
# and the capped, jittered reconnect backoff both use. Every blocking call is bounded.

import binascii

try:
    import select
except ImportError:  # pragma: no cover
    select = None

SERIAL_PREFIX = b"~SB"
MAX_LINE = 2 * 1200  # base64 of the largest frame, with room to spare
KEEPALIVE_S = 30  # MQTT keepalive; we ping at half of it when idle
MAX_FRAMES_PER_POLL = 16  # a flood cannot starve the watchdog or the sensors


class LinkDown(Exception):
    pass


class Backoff:
    """Capped exponential backoff with "equal jitter": the k-th retry waits between half and all
    of min(cap, base * 2**k) ms. `rand(n)` returns an int in [0, n)."""

    def __init__(self, base_ms, cap_ms, rand):
        self.base = max(1, int(base_ms))
        self.cap = max(self.base, int(cap_ms))
        self.rand = rand
        self.attempt = 0

    def next_ms(self):
        ceiling = min(self.cap, self.base << min(self.attempt, 20))
        self.attempt += 1
        half = ceiling // 2
        return half + self.rand(ceiling - half + 1)

    def reset(self):
        self.attempt = 0


def encode_line(frame):
    return SERIAL_PREFIX + binascii.b2a_base64(frame).strip() + b"\n"


class LineSplitter:
    """Collects serial bytes into frames; oversized or undecodable lines are counted and dropped."""

    def __init__(self):
        self.buf = b""
        self.dropped = 0
        self.skipping = False

    def feed(self, data):
        out = []
        self.buf += data
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                if len(self.buf) > MAX_LINE:
                    self.buf = b""
                    self.skipping = True  # drop the rest of this line too
                    self.dropped += 1
                return out
            line, self.buf = self.buf[:i], self.buf[i + 1 :]
            if self.skipping:
                self.skipping = False
                continue
            line = line.strip()
            if not line.startswith(SERIAL_PREFIX):
                continue  # REPL noise, prints
            try:
                out.append(binascii.a2b_base64(line[len(SERIAL_PREFIX) :]))
            except ValueError:
                self.dropped += 1


class MqttLink:
    """Frames over MQTT with umqtt.simple's MQTTClient API.

    Topics (under cfg["topic"] = "streembit/<gateway id>/companion/<device>"): the board
    publishes frames to .../up and "online"/"offline" (retained; "offline" is the last will) to
    .../status, and subscribes to .../down. The broker's ACL lets this board's user use only
    these topics."""

    def __init__(self, cfg, client_cls, ssl_ctx=None, clock=None):
        self.cfg = cfg
        self.client_cls = client_cls
        self.ssl_ctx = ssl_ctx
        self.clock = clock
        base = cfg["topic"]
        self.up_topic = (base + "/up").encode()
        self.down_topic = (base + "/down").encode()
        self.status_topic = (base + "/status").encode()
        self.client = None
        self.inbox = []
        self.last_tx = 0
        self.poller = None

    def _on_msg(self, topic, msg):
        if topic == self.down_topic and len(self.inbox) < MAX_FRAMES_PER_POLL * 4:
            self.inbox.append(bytes(msg))

    def connect(self):
        b = self.cfg["broker"]
        kwargs = {"keepalive": KEEPALIVE_S}
        if self.ssl_ctx is not None:
            kwargs["ssl"] = self.ssl_ctx
        c = self.client_cls(
            self.cfg["client_id"], b["host"], b["port"], self.cfg["username"],
            self.cfg["password"], **kwargs
        )
        if self.ssl_ctx is not None and hasattr(c, "ssl_params"):
            # umqtt.simple before 1.4 takes ssl=True plus wrap_socket() arguments
            c.ssl = True
            c.ssl_params = self.ssl_ctx.legacy_params()
        c.set_callback(self._on_msg)
        c.set_last_will(self.status_topic, b"offline", True, 1)
        try:
            c.connect(True)
            c.subscribe(self.down_topic, 1)
            c.publish(self.status_topic, b"online", True, 1)
        except Exception as exc:
            self._close(c)
            raise LinkDown("connect: " + repr(exc))
        self.client = c
        self.poller = None
        if select is not None and hasattr(select, "poll"):
            try:
                p = select.poll()
                p.register(c.sock, select.POLLIN)
                self.poller = p
            except (OSError, TypeError, ValueError):
                self.poller = None
        self.last_tx = self.clock() if self.clock else 0

    @property
    def up(self):
        return self.client is not None

    def send(self, frame, important=True):
        if self.client is None:
            raise LinkDown("not connected")
        try:
            self.client.publish(self.up_topic, frame, False, 1 if important else 0)
        except Exception as exc:
            self.close()
            raise LinkDown("publish: " + repr(exc))
        self.last_tx = self.clock() if self.clock else 0

    def poll(self, timeout_ms):
        """Frames that arrived, waiting up to TIMEOUT_MS for the first one."""
        if self.client is None:
            raise LinkDown("not connected")
        try:
            if not self.inbox and self.poller is not None and timeout_ms > 0:
                if not self._pending():
                    self.poller.poll(timeout_ms)
            for _ in range(MAX_FRAMES_PER_POLL):
                if self.client.check_msg() is None:
                    break
        except Exception as exc:
            self.close()
            raise LinkDown("receive: " + repr(exc))
        frames, self.inbox = self.inbox, []
        return frames

    def _pending(self):
        pending = getattr(self.client.sock, "pending", None)
        try:
            return bool(pending and pending())
        except Exception:
            return False

    def keepalive(self, now):
        if self.client is not None and self.clock and now - self.last_tx > KEEPALIVE_S * 500:
            try:
                self.client.ping()
            except Exception as exc:
                self.close()
                raise LinkDown("ping: " + repr(exc))
            self.last_tx = now

    def _close(self, c):
        try:
            c.sock.close()
        except Exception:
            pass

    def close(self):
        c, self.client = self.client, None
        if c is not None:
            self._close(c)


class SerialLink:
    """Frames as lines on a byte stream pair (the board's USB serial: sys.stdin/sys.stdout)."""

    def __init__(self, rx, tx, reader=None):
        self.rx = rx  # has read(n) (non-blocking after poll) or use `reader`
        self.tx = tx  # has write(bytes)
        self.reader = reader  # optional callable(timeout_ms) -> bytes
        self.split = LineSplitter()
        self.connected = False
        self.poller = None

    def connect(self):
        if self.reader is None and select is not None and hasattr(select, "poll"):
            p = select.poll()
            p.register(self.rx, select.POLLIN)
            self.poller = p
        self.connected = True

    @property
    def up(self):
        return self.connected

    def send(self, frame, important=True):
        try:
            self.tx.write(encode_line(frame))
        except Exception as exc:
            raise LinkDown("serial write: " + repr(exc))

    def poll(self, timeout_ms):
        if self.reader is not None:
            data = self.reader(timeout_ms)
        elif self.poller is not None and self.poller.poll(timeout_ms):
            data = self.rx.read(1)  # one byte is always available after poll
        else:
            data = b""
        return self.split.feed(data) if data else []

    def keepalive(self, now):
        pass

    def close(self):
        self.connected = False
