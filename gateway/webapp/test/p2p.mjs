// Test driver of the P2P side of the core library (records.js, find.js, p2p.js), driven by
// tests/test_webapp_p2p.py over the line protocol of driver.mjs: each stdin line is
// {"id", "cmd", ...args}; each answer one stdout line {"id", "ok": RESULT} or
// {"id", "error": {code, reason, status}}. Commands run concurrently (answers may come out of
// order; match them by id). The browser code uses the standard WebSocket API; Node < 22 has
// none, so the `ws` package is injected here (tests only).

import { createInterface } from "node:readline";

if (!globalThis.crypto) globalThis.crypto = (await import("node:crypto")).webcrypto; // Node 18
const WebSocketImpl = globalThis.WebSocket || (await import("ws")).WebSocket;

const keys = await import("../src/lib/keys.js");
const { verifyContactRecord } = await import("../src/lib/records.js");
const { findGateway } = await import("../src/lib/find.js");
const { GatewayP2P, P2PConnection } = await import("../src/lib/p2p.js");


const { storeOf, keyOf } = await import("./stores.mjs");
const gateways = new Map(); // name -> GatewayP2P
const conns = new Map(); // name -> P2PConnection
const streams = new Map(); // name -> {values, errors, stop}
const track = (s) => [(v, meta) => s.values.push({ v, ...meta }), (e) => s.errors.push({ ...e.toJSON(), retrying: e.retrying })];

const COMMANDS = {
  importPem: async (a) => keys.describeKey(await keys.importPkcs8Pem(storeOf(a.store), a.pem, { replace: true })),
  verifyRecord: async (a) => verifyContactRecord(a.text, a.expectedId, { now: a.now }),
  find: async (a) => {
    const rec = await findGateway(a.lookup, a.gatewayId, { WebSocketImpl, timeoutMs: a.timeoutMs });
    return { id: rec.id, seq: rec.seq, addrs: rec.addrs, jwk: rec.jwk, refused: rec.refused };
  },
  /** A raw P2PConnection to URL with the gateway's JWK (no lookup). */
  connect: async (a) => {
    const conn = await P2PConnection.connect(a.url, await keyOf(a.store), a.gatewayJwk, { WebSocketImpl });
    conns.set(a.name, conn);
    return { url: conn.url, gatewayId: conn.gatewayId };
  },
  request: async (a) => conns.get(a.name).request(a.op, a.args || {}, a.opts || {}),
  /** A GatewayP2P named NAME (found by id through LOOKUP on first use). */
  gateway: async (a) => {
    gateways.set(a.name, new GatewayP2P(await keyOf(a.store), a.gatewayId, { lookup: a.lookup, WebSocketImpl }));
    return {};
  },
  call: async (a) => {
    const gw = gateways.get(a.name);
    const value = await gw[a.method](...(a.args || []));
    return { value: value === undefined ? null : value, url: gw.conn && gw.conn.url };
  },
  observe: async (a) => {
    const s = { values: [], errors: [] };
    const target = a.conn ? conns.get(a.conn) : gateways.get(a.name);
    s.stop = target.observe(a.thing, a.prop, ...track(s), { event: Boolean(a.event) });
    streams.set(a.stream, s);
    return {};
  },
  streamState: async (a) => {
    const s = streams.get(a.stream);
    if (a.stop) s.stop();
    return { values: s.values, errors: s.errors };
  },
  /** Drop the GatewayP2P's current connection (as a lost network would). */
  drop: async (a) => {
    gateways.get(a.name).conn.close();
    return {};
  },
  close: async (a) => {
    const target = a.conn ? conns.get(a.conn) : gateways.get(a.name);
    target.close();
    return {};
  },
};

const rl = createInterface({ input: process.stdin });
const write = (out) => process.stdout.write(`${JSON.stringify(out)}\n`);
for await (const line of rl) {
  if (!line.trim()) continue;
  const msg = JSON.parse(line);
  (async () => {
    try {
      const fn = COMMANDS[msg.cmd];
      if (!fn) throw new Error(`unknown command ${msg.cmd}`);
      write({ id: msg.id, ok: (await fn(msg)) ?? null });
    } catch (err) {
      write({ id: msg.id, error: { code: err.code || err.name, reason: err.reason || err.message, status: err.status } });
    }
  })();
}
process.exit(0);
