"""MicroPython's `ssl` as the companion uses it (SSLContext, CERT_REQUIRED, load_verify_locations
with DER cadata, wrap_socket on a usocket), over CPython's ssl: real TLS, real verification."""

import ssl as _ssl

import usocket

PROTOCOL_TLS_CLIENT = _ssl.PROTOCOL_TLS_CLIENT
CERT_REQUIRED = _ssl.CERT_REQUIRED


class SSLContext:
    def __init__(self, protocol):
        self.ctx = _ssl.SSLContext(protocol)

    @property
    def verify_mode(self):
        return self.ctx.verify_mode

    @verify_mode.setter
    def verify_mode(self, mode):
        self.ctx.verify_mode = mode

    def load_verify_locations(self, cadata=None):
        self.ctx.load_verify_locations(cadata=cadata)

    def wrap_socket(self, sock, server_hostname=None):
        raw = sock.s if isinstance(sock, usocket.socket) else sock
        raw.settimeout(usocket.CONNECT_TIMEOUT_S)
        wrapped = self.ctx.wrap_socket(raw, server_hostname=server_hostname)
        wrapped.settimeout(None)
        return usocket.socket(wrapped)
