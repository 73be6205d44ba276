"""MicroPython's socket API (read/write, None on a non-blocking read with no data) over
CPython sockets, for the companion's MQTT client in the tests."""

import socket as _socket

getaddrinfo = _socket.getaddrinfo
CONNECT_TIMEOUT_S = 5.0


class socket:  # MicroPython's name
    def __init__(self, sock=None):
        self.s = sock if sock is not None else _socket.socket()
        self.blocking = True

    def connect(self, addr):
        self.s.settimeout(CONNECT_TIMEOUT_S)
        self.s.connect(addr)
        self.s.settimeout(None)
        self.s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)

    def setblocking(self, flag):
        self.blocking = flag
        self.s.setblocking(flag)

    def read(self, n):
        out = b""
        while len(out) < n:
            try:
                chunk = self.s.recv(n - len(out))
            except (BlockingIOError, _WantRead):
                if not out:
                    return None
                self.s.setblocking(True)
                continue
            if not chunk:
                return out
            out += chunk
        return out

    def write(self, buf, n=None):
        data = bytes(buf if n is None else buf[:n])
        self.s.sendall(data)
        return len(data)

    def pending(self):
        return self.s.pending() if hasattr(self.s, "pending") else 0

    def fileno(self):
        return self.s.fileno()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


try:
    import ssl as _ssl

    _WantRead = _ssl.SSLWantReadError
except ImportError:  # pragma: no cover

    class _WantRead(Exception):
        pass
