"""A clean-room MQTT 3.1.1 client with the API of micropython-lib's `umqtt.simple` (1.4+).

The real umqtt.simple is what `companion flash` installs on a board (`mpremote mip install
umqtt.simple`); it is not installable on CPython from PyPI (the package there has no setup.py)
and micropython-lib's index is not a registry these tests may reach. This module implements
the same calls, with the same socket usage (`import usocket`; `sock.read`/`sock.write`,
`setblocking`), so the companion's link code talks to the real mosquitto through it.
"""

import struct

import usocket as socket


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        if port == 0:
            port = 8883 if ssl else 1883
        self.client_id = client_id
        self.sock = None
        self.server = server
        self.port = port
        self.ssl = ssl
        self.pid = 0
        self.cb = None
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False

    @staticmethod
    def _b(s):
        return s.encode() if isinstance(s, str) else bytes(s)

    def _send_str(self, s):
        s = self._b(s)
        self.sock.write(struct.pack("!H", len(s)))
        self.sock.write(s)

    def _varlen(self, n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def _recv_len(self):
        n = sh = 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                return n
            sh += 7

    def _read(self, n):
        data = self.sock.read(n)
        if not data or len(data) < n:
            raise OSError(-1)
        return data

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not 0 <= qos <= 2 or not topic:
            raise ValueError("bad last will")
        self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain = topic, msg, qos, retain

    def connect(self, clean_session=True):
        self.sock = socket.socket()
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        self.sock.connect(addr)
        if self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        flags = clean_session << 1
        payload = bytearray()
        body = bytearray(b"\x00\x04MQTT\x04")
        if self.lw_topic:
            flags |= 0x4 | (self.lw_qos << 3) | (self.lw_retain << 5)
        if self.user:
            flags |= 0xC0
        body.append(flags)
        body += struct.pack("!H", self.keepalive)

        def s(x):
            x = self._b(x)
            return struct.pack("!H", len(x)) + x

        payload += s(self.client_id)
        if self.lw_topic:
            payload += s(self.lw_topic) + s(self.lw_msg)
        if self.user:
            payload += s(self.user) + s(self.pswd)
        rest = bytes(body) + bytes(payload)
        self.sock.write(b"\x10" + self._varlen(len(rest)) + rest)
        resp = self._read(4)
        if resp[0] != 0x20 or resp[1] != 0x02:
            raise MQTTException("bad CONNACK")
        if resp[3] != 0:
            raise MQTTException(resp[3])
        return resp[2] & 1

    def disconnect(self):
        self.sock.write(b"\xe0\x00")
        self.sock.close()

    def ping(self):
        self.sock.write(b"\xc0\x00")

    def publish(self, topic, msg, retain=False, qos=0):
        topic, msg = self._b(topic), self._b(msg)
        if qos not in (0, 1):
            raise ValueError("qos 0 or 1")
        sz = 2 + len(topic) + len(msg) + (2 if qos else 0)
        head = bytes([0x30 | qos << 1 | retain]) + self._varlen(sz)
        pkt = head + struct.pack("!H", len(topic)) + topic
        if qos:
            self.pid = self.pid % 65535 + 1
            pid = self.pid
            pkt += struct.pack("!H", pid)
        self.sock.write(pkt + msg)
        if qos == 1:
            while True:
                op = self.wait_msg()
                if op == 0x40:
                    if self._read(1) != b"\x02":
                        raise MQTTException("bad PUBACK")
                    rcv = struct.unpack("!H", self._read(2))[0]
                    if rcv == pid:
                        return

    def subscribe(self, topic, qos=0):
        if self.cb is None:
            raise MQTTException("Subscribe callback is not set")
        topic = self._b(topic)
        self.pid = self.pid % 65535 + 1
        body = struct.pack("!H", self.pid) + struct.pack("!H", len(topic)) + topic + bytes([qos])
        self.sock.write(b"\x82" + self._varlen(len(body)) + body)
        while True:
            op = self.wait_msg()
            if op == 0x90:
                resp = self._read(4)
                if resp[3] == 0x80:
                    raise MQTTException(resp[3])
                return

    def wait_msg(self):
        res = self.sock.read(1)
        self.sock.setblocking(True)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1)
        if res == b"\xd0":  # PINGRESP
            self._read(1)
            return None
        op = res[0]
        if op & 0xF0 != 0x30:
            return op
        sz = self._recv_len()
        tlen = struct.unpack("!H", self._read(2))[0]
        topic = self._read(tlen)
        sz -= tlen + 2
        pid = None
        if op & 6:
            pid = struct.unpack("!H", self._read(2))[0]
            sz -= 2
        msg = self._read(sz) if sz else b""
        self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.write(b"\x40\x02" + struct.pack("!H", pid))
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
