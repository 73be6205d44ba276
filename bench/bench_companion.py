"""Command latency gateway -> companion -> acknowledgement over mosquitto, against the raw
mosquitto round trip measured in the same run.

    .venv/bin/python bench/bench_companion.py [--n 500] [--plain] [--json]

Both paths use the same clients and broker (a mosquitto started here on 127.0.0.1 with the
configuration the gateway writes: TLS by default, `--plain` for a plain listener):
  raw        the gateway's paho connection publishes (QoS 1) to a topic an umqtt-API client
             echoes back (QoS 1) with no processing; the time to the echo's arrival
  companion  DeviceLink.command({"relay": on}) -> sealed C frame (HMAC-SHA256, counter) ->
             the companion (app.Companion on CPython, same umqtt-API client) checks it, sets
             the relay pin, seals an A frame -> the gateway checks it and resolves the command
The difference is what the companion protocol costs (two HMACs and JSON on each side, the
session checks, the board's loop). One command in flight at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from device_drivers.companion import BrokerSettings, MqttConnection, Timing  # noqa: E402
from gateway.companion.broker import load_credentials, write_broker_config  # noqa: E402
from gateway.companion.flash import board_config  # noqa: E402
from gateway.companion.setup import CompanionSetup  # noqa: E402
from gateway.config import GatewayConfig, MqttConfig  # noqa: E402
from gateway.provisioning.pairing import companion_pairing  # noqa: E402
from gateway.state import StateDir  # noqa: E402
from tests.companion_support.harness import Board, Mosquitto, free_port  # noqa: E402

WARMUP = 50


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def summary(name: str, ms: list[float]) -> dict[str, float | str | int]:
    return {
        "path": name,
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(pct(ms, 95), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def echo_thread(
    port: int, user: str, pw: str, ca: str | None, root: str, stop: threading.Event
) -> None:
    """An umqtt-API client that republishes ROOT/ping to ROOT/pong (QoS 1)."""
    import select

    import ssl_shim
    from umqtt.simple import MQTTClient

    tls = None
    if ca is not None:
        import app

        tls = app.Tls(ssl_shim, Path(ca).read_text())
    c = MQTTClient("bench-echo", "127.0.0.1", port, user, pw, 30, ssl=tls)
    c.set_callback(lambda t, m: c.publish(f"{root}/pong".encode(), m, False, 1))
    c.connect(True)
    c.subscribe(f"{root}/ping".encode(), 1)
    p = select.poll()
    p.register(c.sock, select.POLLIN)
    while not stop.is_set():
        if c.sock.pending() or p.poll(50):
            c.check_msg()
    c.disconnect()


async def run(n: int, plain: bool) -> list[dict[str, float | str | int]]:
    with tempfile.TemporaryDirectory(prefix="bench-companion-") as tmp:
        root = Path(tmp)
        state = StateDir(root / "state")
        state.init_identity()
        port = free_port()
        rec = companion_pairing(state, "bench", "127.0.0.1", port)
        extra = ["persistence false"] + (["user root"] if os.geteuid() == 0 else [])
        files = write_broker_config(
            state, root / "broker", port=port, bind="127.0.0.1", extra=extra
        )
        if plain:  # replace the TLS listener by a plain one on the same port
            conf = files.conf.read_text().split("\n")
            conf = [ln for ln in conf if not ln.startswith(("certfile", "keyfile", "tls_"))]
            files.conf.write_text("\n".join(conf))
        broker = Mosquitto(files.conf, port, root / "mosquitto.log")
        broker.start()
        creds = load_credentials(state)
        assert creds is not None
        ca = None if plain else creds.ca_file
        results = []
        try:
            # raw round trip: the gateway's paho connection <-> an umqtt-API echo
            topic_root = f"streembit/{state.load_identity().id}/bench"
            conn = MqttConnection(
                BrokerSettings("127.0.0.1", port, creds.username, creds.password, not plain, ca),
                name="raw",
            )
            stop = threading.Event()
            echo = threading.Thread(
                target=echo_thread,
                args=(port, creds.username, creds.password, ca, topic_root, stop),
                daemon=True,
            )
            echo.start()
            got: asyncio.Queue[bytes] = asyncio.Queue()
            conn.subscribe(f"{topic_root}/pong", lambda _t, p: got.put_nowait(p))
            await conn.start()
            await conn.wait_connected(10)
            await asyncio.sleep(0.3)
            raw: list[float] = []
            for i in range(n + WARMUP):
                t0 = time.perf_counter()
                conn.publish(f"{topic_root}/ping", str(i).encode())
                await asyncio.wait_for(got.get(), 5)
                if i >= WARMUP:
                    raw.append((time.perf_counter() - t0) * 1000)
            stop.set()
            echo.join(5)
            await conn.stop()
            results.append(summary("raw mosquitto round trip (QoS 1)", raw))

            # companion command round trip
            broker_url = f"{'mqtt' if plain else 'mqtts'}://127.0.0.1:{port}"
            cfg = GatewayConfig(
                name="bench", state_dir=state.path, mqtt=MqttConfig(broker=broker_url)
            )
            setup = CompanionSetup(cfg, state, state.load_identity().id)
            from gateway.config import ThingConfig

            hub = setup.inject(
                ThingConfig(
                    "relay",
                    "switch",
                    "Relay",
                    driver="companion",
                    driver_settings={"device": "bench"},
                )
            )["hub"]
            board = Board(
                board_config(
                    rec,
                    channels={"relay": {"kind": "relay", "pin": 5}},
                    ca_pem=None if plain else Path(creds.ca_file).read_text(),
                    # the flood limits (50 frames/s into the board, 20/s per board into the
                    # gateway) would drop a benchmark's back-to-back commands: lifted here
                    extra={"report_ms": 60000, "link_timeout_ms": 30000, "max_rx_per_s": 10**6},
                ),
                root,
            )
            board.start()
            hub.timing = Timing(max_frames_per_s=1e6, burst=10**6)
            await hub.start()
            link = hub.device("bench")
            t_end = time.monotonic() + 10
            while not (link.session.ready and board.comp.session.ready):
                if time.monotonic() > t_end:
                    raise RuntimeError("no companion session")
                await asyncio.sleep(0.01)
            comp: list[float] = []
            for i in range(n + WARMUP):
                t0 = time.perf_counter()
                await link.command({"relay": i % 2 == 0})
                if i >= WARMUP:
                    comp.append((time.perf_counter() - t0) * 1000)
            await hub.stop()
            board.stop()
            results.append(summary("companion command -> ack", comp))
        except BaseException:
            print((root / "mosquitto.log").read_text()[-1500:], file=sys.stderr)
            raise
        finally:
            broker.stop()
        return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--plain", action="store_true", help="plain MQTT instead of TLS")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = asyncio.run(run(args.n, args.plain))
    load = os.getloadavg()[0]
    print(
        f"# companion bench: {args.n} round trips each, {'plain' if args.plain else 'TLS'}, "
        f"load {load:.2f}"
    )
    for r in res:
        print(
            f"{r['path']:36} p50 {r['p50_ms']:7.3f} ms  p95 {r['p95_ms']:7.3f} ms  "
            f"p99 {r['p99_ms']:7.3f} ms  mean {r['mean_ms']:7.3f} ms"
        )
    over = float(res[1]["p50_ms"]) - float(res[0]["p50_ms"])
    print(f"companion protocol overhead at p50: {over:.3f} ms")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
