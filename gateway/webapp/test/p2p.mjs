// Test driver of the P2P side of the core library (records.js, find.js, p2p.js), driven by
// tests/test_webapp_p2p.py over the line protocol of driver.mjs: each stdin line is
// {"id", "cmd", ...args}; each answer one stdout line {"id", "ok": RESULT} or
// {"id", "error": {code, reason, status}}. Commands run concurrently (answers may come out of
// order; match them by id). The browser code uses the standard WebSocket API; Node < 22 has
// none, so the `ws` package is injected here (tests only). Every WebSocket of the driver counts
// the frames it sends and receives by header `alg` (`frames`): session frames are "dir", sealed
// messages "ECDH-ES", plain refusals and lookup frames null.

import { createInterface } from "node:readline";

if (!globalThis.crypto) globalThis.crypto = (await import("node:crypto")).webcrypto; // Node 18
const BaseWebSocket = globalThis.WebSocket || (await import("ws")).WebSocket;

const keys = await import("../src/lib/keys.js");
const { verifyContactRecord } = await import("../src/lib/records.js");
const { findGateway } = await import("../src/lib/find.js");
const { GatewayP2P, P2PConnection } = await import("../src/lib/p2p.js");
const sessions = await import("../src/lib/sessions.js");
const { b64uDecode } = await import("../src/lib/util.js");
const { ReplayCache } = await import("../src/lib/sealed.js");

const frames = []; // {url, dir: "sent" | "received", alg, token (sent frames)}
class WebSocketImpl extends BaseWebSocket {
  constructor(url, ...rest) {
    super(url, ...rest);
    this.address = String(url);
    this.addEventListener("message", (ev) => frames.push({ url: this.address, dir: "received", alg: typeof ev.data === "string" ? sessions.frameAlg(ev.data) : null }));
  }

  send(data) {
    frames.push({ url: this.address, dir: "sent", alg: sessions.frameAlg(data), token: typeof data === "string" ? data : null });
    return super.send(data);
  }
}
const hex = (bytes) => Buffer.from(bytes).toString("hex");
/** One end (A.role) of the session of A.secret and A.sid between A.peer and A.gateway. */
const sessionEnd = (a) => sessions.SessionKeys.derive(b64uDecode(a.secret, "secret"), a.sid, {
  role: a.role,
  localId: a.role === "peer" ? a.peer : a.gateway,
  remoteId: a.role === "peer" ? a.gateway : a.peer,
  ttl: a.ttl ?? 600,
});
const sessionReplay = new ReplayCache();


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
    const conn = await P2PConnection.connect(a.url, await keyOf(a.store), a.gatewayJwk, { WebSocketImpl, ...(a.opts || {}) });
    conns.set(a.name, conn);
    return { url: conn.url, gatewayId: conn.gatewayId };
  },
  request: async (a) => conns.get(a.name).request(a.op, a.args || {}, a.opts || {}),
  /** A GatewayP2P named NAME (found by id through LOOKUP on first use). */
  gateway: async (a) => {
    gateways.set(a.name, new GatewayP2P(await keyOf(a.store), a.gatewayId, { lookup: a.lookup, WebSocketImpl, ...(a.opts || {}) }));
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
  // ---------------------------------------------------------------- session keys (sessions.js)
  /** The frames sent and received so far (URL: those of that address only); CLEAR: forget them. */
  frames: async (a) => {
    const out = frames.filter((f) => !a.url || f.url === a.url);
    if (a.clear) frames.length = 0;
    return out;
  },
  /** Both derived keys (hex) of the vectors' inputs. */
  sessionDerive: async (a) => {
    const secret = b64uDecode(a.secret, "secret");
    return {
      p2g: hex(await sessions.deriveKey(secret, a.sid, sessions.TO_GATEWAY, a.peer, a.gateway)),
      g2p: hex(await sessions.deriveKey(secret, a.sid, sessions.TO_PEER, a.peer, a.gateway)),
    };
  },
  /** A session frame from end A.role: BODY as TYP. */
  sessionSeal: async (a) => ({ token: await (await sessionEnd(a)).seal(a.body, a.typ, { jti: a.jti, now: a.now, ttl: a.ttl }) }),
  /** Open TOKEN at end A.role (A.expired: after the session's TTL; A.replay: a shared cache). */
  sessionOpen: async (a) => {
    const end = await sessionEnd(a);
    if (a.expired) end.acceptUntil = 0;
    return end.open(a.token, { now: a.now, replay: a.replay ? sessionReplay : null });
  },
  checkOffer: async (a) => {
    const { checkBody } = await import("../src/lib/sealed.js");
    checkBody("request", a.body);
    return {};
  },
  newOffer: async () => {
    const { offer, secret } = sessions.newOffer();
    return { offer, secret: hex(secret) };
  },
  parseAnnouncement: async (a) => sessions.parseAnnouncement(a.value),
  /** The session of connection NAME (or of GatewayP2P GATEWAY): {sid, usable} or null. */
  session: async (a) => {
    const conn = a.gateway ? gateways.get(a.gateway).conn : conns.get(a.name);
    const s = conn.session;
    return s ? { sid: s.sid, usable: s.usable() } : null;
  },
  /** Tamper with connection NAME: SESSIONKEYS on/off; FORGET: the gateway no longer knows our
   * session id (its frames get unknown_session; the answer has our send key, hex, so that the
   * test can read what we send on it); STALE: our session is past its send time. */
  tweak: async (a) => {
    const conn = conns.get(a.name);
    const out = {};
    if (a.sessionKeys !== undefined) conn.sessionKeys = a.sessionKeys;
    if (a.forget) {
      conn.session.sid = "B".repeat(22);
      out.sendKey = hex(conn.session._send);
    }
    if (a.stale) conn.session.sendUntil = 0;
    return out;
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
