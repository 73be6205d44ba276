"""Small UDP/TCP probes for the NAT lab (tests/netns/natlab.py); stdlib only, one JSON line out.

Run inside a lab namespace (`host.run([sys.executable, PROBE, ...])`):
  serve --udp P --tcp P      answer every UDP datagram with the sender's address as JSON (a STUN
                             Binding request gets a STUN Binding response: miniupnpd's STUN test),
                             and every TCP connection with the peer's address;
                             prints {"ready": true}
  udp --port P --to H:P...   from one socket bound to P, ask each server which address it sees
                             (prints {"mapped": [...]}), then --listen S seconds for unsolicited
                             datagrams, answering each with "pong" (prints {"got": [...]})
  send --to H:P [--wait S]   send one datagram, print {"reply": TEXT or null}
  tcp-listen --port P --seconds S   print {"from": [ip, port] or null} for the first connection
  tcp-connect --to H:P [--timeout S]  print {"connected": bool, "seen": [ip, port] or null}
  natpmp --gw IP --proto udp|tcp --port P [--lifetime S]  NAT-PMP (RFC 6886) public address and
                             a mapping request; prints {"public": ip, "mapped": port, "result": n}
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import struct
import threading
import time

STUN_COOKIE = 0x2112A442


def out(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def stun_response(request: bytes, addr: tuple[str, int]) -> bytes | None:
    """A Binding success response to a Binding request (RFC 5389), else None."""
    if len(request) < 20 or request[0:2] != b"\x00\x01":
        return None
    if struct.unpack("!I", request[4:8])[0] != STUN_COOKIE:
        return None
    ip = struct.unpack("!I", socket.inet_aton(addr[0]))[0]
    xor = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, addr[1] ^ (STUN_COOKIE >> 16), ip ^ STUN_COOKIE)
    mapped = struct.pack("!HHBBHI", 0x0001, 8, 0, 1, addr[1], ip)
    body = xor + mapped
    return struct.pack("!HH", 0x0101, len(body)) + request[4:20] + body


def serve(udp_port: int, tcp_port: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", udp_port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", tcp_port))
    tcp.listen(16)

    def accept_loop() -> None:
        while True:
            conn, peer = tcp.accept()
            with conn:
                conn.sendall((json.dumps({"ip": peer[0], "port": peer[1]}) + "\n").encode())

    threading.Thread(target=accept_loop, daemon=True).start()
    out({"ready": True})
    while True:
        data, addr = udp.recvfrom(2048)
        reply = stun_response(data, addr)
        if reply is None:
            reply = json.dumps({"ip": addr[0], "port": addr[1]}).encode()
        udp.sendto(reply, addr)


def udp_probe(port: int, targets: list[str], listen: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.3)
    mapped = []
    for target in targets:
        dest = hostport(target)
        seen = None
        for _ in range(5):
            sock.sendto(b"probe", dest)
            try:
                data, frm = sock.recvfrom(2048)
            except TimeoutError:
                continue
            if frm == dest:
                seen = json.loads(data)
                break
        mapped.append({"to": target, "ip": seen and seen["ip"], "port": seen and seen["port"]})
    out({"mapped": mapped})
    got = []
    deadline = time.monotonic() + listen
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, frm = sock.recvfrom(2048)
        except TimeoutError:
            break
        got.append({"from": list(frm), "text": data.decode(errors="replace")})
        sock.sendto(b"pong", frm)
        break  # one unsolicited datagram answers the question
    out({"got": got})


def send(target: str, text: str, wait: float, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.25)
    dest = hostport(target)
    reply = None
    deadline = time.monotonic() + wait
    while reply is None and time.monotonic() < deadline:
        sock.sendto(text.encode(), dest)
        try:
            data, _ = sock.recvfrom(2048)
        except (TimeoutError, ConnectionRefusedError):
            continue
        reply = data.decode(errors="replace")
    out({"reply": reply})


def tcp_listen(port: int, seconds: float) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4)
    out({"listening": port})
    with selectors.DefaultSelector() as sel:
        sel.register(srv, selectors.EVENT_READ)
        if not sel.select(seconds):
            out({"from": None})
            return
    conn, peer = srv.accept()
    with conn:
        conn.sendall(b"hello\n")
    out({"from": list(peer)})


def tcp_connect(target: str, timeout: float) -> None:
    try:
        with socket.create_connection(hostport(target), timeout=timeout) as conn:
            conn.settimeout(timeout)
            data = conn.recv(256)
            out({"connected": True, "text": data.decode(errors="replace").strip()})
    except OSError as exc:
        out({"connected": False, "error": type(exc).__name__})


def natpmp(gw: str, proto: str, port: int, lifetime: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)

    def ask(req: bytes, size: int) -> bytes:
        for _ in range(6):
            sock.sendto(req, (gw, 5351))
            try:
                data, _ = sock.recvfrom(64)
            except TimeoutError:
                continue
            if len(data) >= size:
                return data
        raise SystemExit(f"no NAT-PMP answer from {gw}")

    pub = ask(struct.pack("!BB", 0, 0), 12)
    op = 1 if proto == "udp" else 2
    res = ask(struct.pack("!BBHHHI", 0, op, 0, port, port, lifetime), 16)
    _, _, result, _, _, mapped, life = struct.unpack("!BBHIHHI", res[:16])
    out({"public": socket.inet_ntoa(pub[8:12]), "public_result": struct.unpack("!H", pub[2:4])[0],
         "result": result, "mapped": mapped, "lifetime": life})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--udp", type=int, required=True)
    s.add_argument("--tcp", type=int, required=True)
    u = sub.add_parser("udp")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--to", action="append", required=True)
    u.add_argument("--listen", type=float, default=0.0)
    se = sub.add_parser("send")
    se.add_argument("--to", required=True)
    se.add_argument("--port", type=int, default=0)
    se.add_argument("--wait", type=float, default=1.0)
    se.add_argument("text", nargs="?", default="hello")
    tl = sub.add_parser("tcp-listen")
    tl.add_argument("--port", type=int, required=True)
    tl.add_argument("--seconds", type=float, default=3.0)
    tc = sub.add_parser("tcp-connect")
    tc.add_argument("--to", required=True)
    tc.add_argument("--timeout", type=float, default=1.0)
    n = sub.add_parser("natpmp")
    n.add_argument("--gw", required=True)
    n.add_argument("--proto", choices=("udp", "tcp"), default="udp")
    n.add_argument("--port", type=int, required=True)
    n.add_argument("--lifetime", type=int, default=3600)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.udp, a.tcp)
    elif a.cmd == "udp":
        udp_probe(a.port, a.to, a.listen)
    elif a.cmd == "send":
        send(a.to, a.text, a.wait, a.port)
    elif a.cmd == "tcp-listen":
        tcp_listen(a.port, a.seconds)
    elif a.cmd == "tcp-connect":
        tcp_connect(a.to, a.timeout)
    else:
        natpmp(a.gw, a.proto, a.port, a.lifetime)


if __name__ == "__main__":
    main()
