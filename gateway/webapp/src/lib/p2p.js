// The Streembit P2P binding in the browser (docs/protocol.md): sealed messages over one
// WebSocket to the gateway's P2P listener or to a relay circuit (the same frames either way).
// Every request is sealed to the gateway's key (sealed.js) with a fresh jti; an answer counts
// only if it opens with our key, comes from the gateway's key and names that jti in `re`.
// Plain refusals {"error","status","frame"} fail the request whose frame digest they name.
// Session keys (docs/protocol.md §8, sessions.js): the first Thing request of a connection
// offers a session; once the gateway's sealed answer announces it, Thing requests go as session
// frames (admin operations stay sealed); `conn.sessionKeys = false` seals everything.
// Uses only the standard WebSocket API (a constructor can be injected: Node tests).
//
//   const conn = await P2PConnection.connect("ws://203.0.113.7:8765/p2p", key, gatewayJwk);
//   const { status, output } = await conn.request("readproperty", { thing: "front-door", name: "state" });
//
// GatewayP2P (below) offers the methods of GatewayHttp the app uses, found by id through
// lookup peers (find.js), so the UI can switch transports.

import { GatewayError } from "./http.js";
import { keyId } from "./keys.js";
import { LibError, b64uEncode, subtle, utf8 } from "./util.js";
import { DLG_OPS, ReplayCache, newJti, openSealed, seal } from "./sealed.js";
import { SESSION_ALG, SessionKeys, frameAlg, newOffer, parseAnnouncement } from "./sessions.js";
import { findGateway } from "./find.js";

export const REQUEST_TIMEOUT_MS = 10_000; // the gateway answers in ms; a lock needs ~1 s
export const CONNECT_TIMEOUT_MS = 10_000; // TCP + WebSocket handshake
export const HAPPY_EYEBALLS_MS = 250; // the next address starts if the previous is not up by then
export const HARD_FRAME_BYTES = 128 * 1024; // larger frames are dropped unread (wire.HARD_FRAME_BYTES)
export const DIGEST_CHARS = 22;
export const MAX_PLAIN_ERROR_BYTES = 512;
const RETRY_MS = [1000, 2000, 5000, 10_000, 30_000];
const TDS_REUSE_MS = 5000;
/** Refusals of a session frame after which the request is sent again, sealed, once. */
const RESEND_CODES = ["unknown_session", "session_expired"];

/** The digest a plain refusal names a frame by: base64url SHA-256 of its bytes, 22 characters. */
export async function frameDigest(frame) {
  const digest = new Uint8Array(await subtle().digest("SHA-256", utf8(frame)));
  return b64uEncode(digest).slice(0, DIGEST_CHARS);
}

/** A plain refusal {code, status, frame}, or null if TEXT is not a well-formed one. */
export function parsePlainError(text) {
  if (typeof text !== "string" || text.length > MAX_PLAIN_ERROR_BYTES || !text.startsWith("{")) return null;
  let obj;
  try { obj = JSON.parse(text); } catch { return null; }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return null;
  const { error: code, frame } = obj;
  const status = obj.status ?? 400;
  if (typeof code !== "string" || !code || code.length > 64) return null;
  if (!Number.isInteger(status) || status < 400 || status > 599) return null;
  if (typeof frame !== "string" || frame.length !== DIGEST_CHARS) return null;
  return { code, status, frame };
}

const gwError = (err) => (err instanceof GatewayError ? err : err instanceof LibError
  ? new GatewayError(err.status || 400, err.code, `not sent: ${err.reason}`)
  : new GatewayError(0, "network", err && err.message ? err.message : String(err)));

/** Open a WebSocket to URL: resolves once open, or GatewayError network/timeout. */
export function openSocket(url, { WebSocketImpl = globalThis.WebSocket, timeoutMs = CONNECT_TIMEOUT_MS, signal } = {}) {
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new WebSocketImpl(url);
    } catch (err) { // a bad URL, or ws:// from an https page (mixed content)
      reject(new GatewayError(0, "network", `cannot open ${url} (${err.message})`));
      return;
    }
    ws.binaryType = "arraybuffer";
    const cleanup = () => { clearTimeout(timer); ws.onopen = ws.onerror = ws.onclose = null; if (signal) signal.removeEventListener("abort", abort); };
    const failWith = (err) => { cleanup(); try { ws.close(); } catch { /* closed */ } reject(err); };
    const abort = () => failWith(new GatewayError(0, "aborted", "another address connected first"));
    const timer = setTimeout(() => failWith(new GatewayError(0, "timeout", `no connection to ${url} in time`)), timeoutMs);
    if (signal) signal.addEventListener("abort", abort, { once: true });
    ws.onopen = () => { cleanup(); resolve(ws); };
    ws.onerror = () => failWith(new GatewayError(0, "network", `cannot connect to ${url}`));
    ws.onclose = () => failWith(new GatewayError(0, "network", `${url} closed the connection`));
  });
}

/** One WebSocket to one gateway (its public JWK known and checked). */
export class P2PConnection {
  /** Connect to the gateway whose public key is GATEWAYJWK at URL (ws:// or wss://). */
  static async connect(url, key, gatewayJwk, opts = {}) {
    const gatewayId = await keyId(gatewayJwk);
    const ws = await openSocket(url, opts);
    return new P2PConnection(ws, key, gatewayJwk, gatewayId, url, opts);
  }

  /** Try URLS in order, the next one HAPPY_EYEBALLS_MS after the previous (RFC 8305 style); the first up wins. */
  static async connectAny(urls, key, gatewayJwk, opts = {}) {
    const gatewayId = await keyId(gatewayJwk);
    const list = [...urls];
    if (!list.length) throw new GatewayError(0, "network", "the gateway publishes no address");
    const ctrl = new AbortController();
    const tries = list.map((url, i) => new Promise((resolve, reject) => {
      setTimeout(() => {
        if (ctrl.signal.aborted) { reject(new GatewayError(0, "aborted", "not needed")); return; }
        openSocket(url, { ...opts, signal: ctrl.signal }).then((ws) => resolve({ ws, url }), reject);
      }, i * (opts.staggerMs ?? HAPPY_EYEBALLS_MS));
    }));
    let won;
    try {
      won = await Promise.any(tries);
    } catch (agg) {
      const first = agg.errors.find((e) => e.code !== "aborted") || agg.errors[0];
      throw new GatewayError(0, first.code || "network", `cannot reach the gateway at any of its ${list.length} addresses (${first.reason})`);
    }
    ctrl.abort();
    for (const t of tries) t.then(({ ws }) => { if (ws !== won.ws) ws.close(); }, () => {});
    return new P2PConnection(won.ws, key, gatewayJwk, gatewayId, won.url, opts);
  }

  constructor(ws, key, gatewayJwk, gatewayId, url, { requestTimeoutMs = REQUEST_TIMEOUT_MS, delegation = null, sessionKeys = true } = {}) {
    this.ws = ws;
    /** Offer and use session keys (docs/protocol.md §8); false: every request is sealed. */
    this.sessionKeys = sessionKeys;
    this.session = null; // SessionKeys once the gateway announced one
    this._offer = null; // {jti, secret}: the one outstanding offer
    this._declined = false; // the gateway answered an offer without a session: keep sealing
    /** A delegation chain (links, first first) sent as claim `dlg` with every Thing operation. */
    this.delegation = delegation && delegation.length ? [...delegation] : null;
    this.key = key;
    this.gatewayJwk = gatewayJwk;
    this.gatewayId = gatewayId;
    this.url = url;
    this.requestTimeoutMs = requestTimeoutMs;
    this.error = null; // set once closed: every later call fails with it
    this._pending = new Map(); // jti -> {resolve, reject, digest, timer}
    this._byDigest = new Map(); // frame digest -> jti (plain refusals)
    this._streams = new Map(); // subscribing jti -> {thing, name, onValue, onError}
    this._replay = new ReplayCache();
    this._queue = Promise.resolve(); // frames are handled one after the other (event order)
    this._onClose = [];
    this.dropped = 0;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => { this._queue = this._queue.then(() => this._onFrame(ev.data)).catch(() => { this.dropped += 1; }); };
    ws.onclose = (ev) => this._fail(new GatewayError(0, "network", `the connection closed${ev && ev.code ? ` (WebSocket close code ${ev.code})` : ""}`));
    ws.onerror = () => this._fail(new GatewayError(0, "network", "the connection broke"));
  }

  get closed() { return this.error !== null; }

  /** Call CB(error) once the connection is gone. */
  onClose(cb) { if (this.error) cb(this.error); else this._onClose.push(cb); }

  /** Send one request and wait for its answer: {status, output}; GatewayError {code, reason, status} otherwise. */
  async request(op, { thing, name, input } = {}, { timeoutMs, jti } = {}) {
    if (this.error) throw this.error;
    const body = { op };
    if (thing !== undefined) body.thing = thing;
    if (name !== undefined) body.name = name;
    if (input !== undefined) body.input = input;
    if (this.delegation && DLG_OPS.includes(op)) body.dlg = this.delegation;
    const id = jti || newJti();
    const limit = timeoutMs ?? this.requestTimeoutMs;
    const deadline = Date.now() + limit;
    const iat = Math.floor(Date.now() / 1000); // one issue time for every frame of this request
    for (let attempt = 1; ; attempt++) {
      const { frame, session } = await this._frame(body, id, attempt === 1, iat);
      try {
        return await this._send(frame, id, op, limit, deadline);
      } catch (err) {
        // The gateway no longer knows our session (it lost it, or its TTL ran out first): stop
        // using it and send the request again, sealed. The refusal is an unauthenticated plain
        // frame, so the first frame may in truth be held by someone: the resend carries the
        // same jti, iat and exp, and the gateway runs at most one of them (protocol §8.4).
        if (attempt > 1 || !session || !RESEND_CODES.includes(err.code)) throw err;
        session.retire();
      } finally {
        if (this._offer && this._offer.jti === id) this._offer = null; // unanswered: may offer again
      }
    }
  }

  /** The frame of request BODY: {frame, session} (the SessionKeys it went on, else null). */
  async _frame(body, jti, mayUseSession, now) {
    const thingOp = DLG_OPS.includes(body.op);
    const s = this.session;
    const args = { sender: this.key, recipientJwk: this.gatewayJwk, typ: "request", jti, now };
    try {
      if (this.sessionKeys && thingOp && mayUseSession && s && s.usable()) return { frame: await s.seal(body, "request", { jti, now }), session: s };
      if (this.sessionKeys && thingOp && !this._offer && !this._declined) {
        const { offer, secret } = newOffer();
        this._offer = { jti, secret };
        return { frame: await seal({ ...body, ses: offer }, args), session: null };
      }
      return { frame: await seal(body, args), session: null };
    } catch (err) {
      if (this._offer && this._offer.jti === jti) this._offer = null;
      throw gwError(err); // we would send what the gateway refuses: don't
    }
  }

  async _send(frame, id, op, limit, deadline) {
    const digest = await frameDigest(frame);
    if (this.error) throw this.error;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._forget(id);
        reject(new GatewayError(0, "timeout", `no answer to ${op} from the gateway within ${limit / 1000} s`));
      }, Math.max(0, deadline - Date.now()));
      this._pending.set(id, { resolve, reject, digest, timer });
      this._byDigest.set(digest, id);
      try {
        this.ws.send(frame);
      } catch (err) {
        this._settle(id, new GatewayError(0, "network", `cannot send to the gateway (${err.message})`));
      }
    });
  }

  /**
   * Observe property PROP of THING (EVENT: subscribe to event PROP instead): ONVALUE(value,
   * {id: seq, name}) per notification; ONERROR(GatewayError) when the subscription is refused
   * or ends (revoked: code forbidden; connection lost: network). Returns stop().
   */
  observe(thing, prop, onValue, onError = () => {}, { event = false } = {}) {
    const jti = newJti();
    const op = event ? "subscribeevent" : "observeproperty";
    const stream = { thing, name: prop, onValue, onError, active: true };
    this._streams.set(jti, stream);
    this.request(op, { thing, name: prop }, { jti }).catch((err) => {
      if (this._streams.get(jti) === stream) this._endStream(jti, err);
    });
    return () => {
      if (!stream.active) return;
      stream.active = false;
      this._streams.delete(jti);
      if (!this.error) {
        this.request(event ? "unsubscribeevent" : "unobserveproperty", { thing, name: prop }).catch(() => {});
      }
    };
  }

  /** Close the connection; pending requests fail and streams end with code closed. Idempotent. */
  close() {
    this._fail(new GatewayError(0, "closed", "connection closed by this app"));
    try { this.ws.close(1000); } catch { /* closed */ }
  }

  // ---------------------------------------------------------------------- receiving
  _forget(jti) {
    const p = this._pending.get(jti);
    if (!p) return null;
    clearTimeout(p.timer);
    this._pending.delete(jti);
    this._byDigest.delete(p.digest);
    return p;
  }

  _settle(jti, result) {
    const p = this._forget(jti);
    if (!p) return false;
    if (result instanceof Error) p.reject(result); else p.resolve(result);
    return true;
  }

  _endStream(jti, err) {
    const s = this._streams.get(jti);
    if (!s) return;
    this._streams.delete(jti);
    s.active = false;
    try { s.onError(err); } catch { /* the caller's problem */ }
  }

  async _onFrame(data) {
    if (typeof data !== "string") { // binary frames are a protocol error (docs/protocol.md §5)
      this._fail(new GatewayError(0, "bad_answer", "the gateway sent a binary frame"));
      try { this.ws.close(1003); } catch { /* closed */ }
      return;
    }
    if (data.length > HARD_FRAME_BYTES) { this.dropped += 1; return; }
    if (data.startsWith("{")) {
      const plain = parsePlainError(data);
      const jti = plain && this._byDigest.get(plain.frame);
      if (!jti) { this.dropped += 1; return; }
      this._settle(jti, new GatewayError(plain.status, plain.code, "refused by the gateway before opening the message"));
      return;
    }
    let msg;
    try {
      const s = this.session;
      msg = s && frameAlg(data) === SESSION_ALG
        ? await s.open(data, { replay: this._replay })
        : await openSealed(data, { recipient: this.key, replay: this._replay });
    } catch {
      this.dropped += 1; // not for us, tampered, expired: never acted on
      return;
    }
    if (msg.sender.id !== this.gatewayId) { this.dropped += 1; return; }
    const c = msg.claims;
    if (c.typ === "reply" || c.typ === "error") await this._answered(msg);
    if (c.typ === "reply") {
      this._settle(c.re, { status: c.status, output: c.output === undefined ? null : c.output });
    } else if (c.typ === "error") {
      const err = new GatewayError(c.status ?? 400, c.code, c.message || "");
      if (typeof c.re !== "string") return;
      if (c.code === "replayed" && this._pending.has(c.re)) return; // a copy replayed on the way
      if (!this._settle(c.re, err)) this._endStream(c.re, err);
    } else if (c.typ === "event") {
      let s = typeof c.re === "string" ? this._streams.get(c.re) : undefined;
      if (!s && c.re === undefined) s = [...this._streams.values()].find((x) => x.thing === c.thing && x.name === c.name);
      if (s && s.active) {
        try { s.onValue(c.data === undefined ? null : c.data, { id: String(c.seq), name: c.name, seq: c.seq }); } catch { /* the caller's problem */ }
      }
    }
  }

  /** Take the session announcement from the sealed answer to our offer, if MSG is that answer. */
  async _answered(msg) {
    const offer = this._offer;
    if (!offer || msg.claims.re !== offer.jti || msg.session) return;
    this._offer = null;
    if (!("ses" in msg.claims)) { this._declined = true; return; } // no sessions at this gateway
    try {
      const { sid, ttl } = parseAnnouncement(msg.claims.ses);
      this.session = await SessionKeys.derive(offer.secret, sid, { role: "peer", localId: this.key.id, remoteId: this.gatewayId, ttl });
    } catch {
      this._declined = true; // a malformed announcement: keep sealing
    }
  }

  _fail(error) {
    if (this.error) return;
    this.error = error;
    for (const jti of [...this._pending.keys()]) this._settle(jti, error);
    for (const jti of [...this._streams.keys()]) this._endStream(jti, error);
    for (const cb of this._onClose.splice(0)) { try { cb(error); } catch { /* ignore */ } }
  }
}

// ------------------------------------------------------------------------ GatewayP2P
/** Per affordance the operations a TD offers (as /acl/mine lists them; gateway rightsview). */
function offeredOps(td) {
  const properties = {};
  for (const [n, p] of Object.entries(td.properties || {})) {
    properties[n] = ["readproperty", ...(p.readOnly ? [] : ["writeproperty"]), ...(p.observable ? ["observeproperty"] : [])];
  }
  const actions = Object.fromEntries(Object.keys(td.actions || {}).map((n) => [n, ["invokeaction"]]));
  const events = Object.fromEntries(Object.keys(td.events || {}).map((n) => [n, ["subscribeevent"]]));
  const type = td.actions && td.actions.lock && td.actions.unlock ? "lock" : "thing";
  return { type, title: td.title, properties, actions, events };
}

const unsupported = (what) => Promise.reject(new GatewayError(0, "unsupported_op", `${what} is not available away from home (only on the gateway's own network)`));

/**
 * The gateway GATEWAYID reached over P2P: found through the lookup peers LOOKUP (addresses or
 * URLs, see find.js), connected lazily and again after a loss. Same methods as GatewayHttp
 * where the protocol has the operation; the others refuse with unsupported_op.
 */
export class GatewayP2P {
  constructor(key, gatewayId, { lookup = [], WebSocketImpl, requestTimeoutMs, connectTimeoutMs, lookupTimeoutMs, delegation = null, sessionKeys } = {}) {
    this.key = key;
    this.gatewayId = gatewayId;
    this.lookup = lookup;
    this.delegation = delegation && delegation.length ? [...delegation] : null; // claim `dlg`
    this.opts = { WebSocketImpl, requestTimeoutMs, timeoutMs: connectTimeoutMs, delegation: this.delegation, sessionKeys };
    this.lookupOpts = { WebSocketImpl, timeoutMs: lookupTimeoutMs };
    this.record = null; // the verified contact record of the last connection
    this.conn = null;
    this._connecting = null;
    this._closed = false;
    this._tds = null; // {at, promise}: see things()
  }

  /** The live connection: found (lookup + verify) and connected on first use or after a loss. */
  connection() {
    if (this._closed) return Promise.reject(new GatewayError(0, "closed", "this gateway handle was closed"));
    if (this.conn && !this.conn.closed) return Promise.resolve(this.conn);
    if (!this._connecting) {
      this._connecting = (async () => {
        const rec = await findGateway(this.lookup, this.gatewayId, this.lookupOpts);
        const conn = await P2PConnection.connectAny(rec.addrs, this.key, rec.jwk, this.opts);
        if (this._closed) { conn.close(); throw new GatewayError(0, "closed", "this gateway handle was closed"); }
        this.record = rec;
        this.conn = conn;
        return conn;
      })().catch((err) => { throw err instanceof GatewayError ? err : new GatewayError(err.status ?? 0, err.code || "network", err.reason || err.message); })
        .finally(() => { this._connecting = null; });
    }
    return this._connecting;
  }

  async _out(op, args) {
    const conn = await this.connection();
    return (await conn.request(op, args)).output;
  }

  /** The Things this key may see: {name, title, id} per Thing (op things). */
  list() { return this._out("things"); }
  td(thing) { return this._out("td", { thing }); }
  /**
   * The TDs of the Things this key may see (as GET /things gives them); none for a key the
   * gateway does not know (the P2P binding shows Things only to known keys). A result is
   * reused for TDS_REUSE_MS: a screen asks for the TDs and the rights together.
   */
  things() {
    const now = Date.now();
    if (!this._tds || now - this._tds.at > TDS_REUSE_MS) {
      const promise = this.list().then((list) => Promise.all((list || []).map((t) => this.td(t.name))));
      this._tds = { at: now, promise };
      promise.catch(() => { if (this._tds && this._tds.promise === promise) this._tds = null; });
    }
    return this._tds.promise;
  }
  read(thing, prop) { return this._out("readproperty", { thing, name: prop }); }
  async write(thing, prop, value) { await this._out("writeproperty", { thing, name: prop, input: value === undefined ? null : value }); return null; }
  invoke(thing, action, input) { return this._out("invokeaction", { thing, name: action, input }); }
  /** The values of THING's properties this key may read: one readproperty each (no readall op). */
  async readAll(thing) {
    const td = await this.td(thing);
    const out = {};
    await Promise.all(Object.keys(td.properties || {}).map((p) => this.read(thing, p).then((v) => { out[p] = v; }, () => {})));
    return out;
  }
  /** Install an owner-signed ACL (op aclpush; the owner key only): {version, grants}. */
  putAcl(jws) { return this._out("aclpush", { input: jws }); }

  /**
   * What the app may show for this key: {role, things}. The P2P binding has no rights query:
   * `things` lists the Things the key has a grant on and their TDs say what they offer; the
   * gateway still decides every request (a refused one comes back forbidden, in words).
   */
  async mine() {
    let tds;
    try {
      tds = await this.things();
    } catch (err) {
      if (err.code === "forbidden" && err.status === 403) return { subject: this.key.id, role: null, grant: null, things: {} };
      throw err;
    }
    const things = {};
    for (const td of tds) {
      const m = /\/things\/([^/]+)\/?$/.exec(td.base || "");
      things[m ? decodeURIComponent(m[1]) : td.title] = offeredOps(td);
    }
    return { subject: this.key.id, role: "peer", grant: null, things };
  }

  status() { return unsupported("The gateway's status"); }
  audit() { return unsupported("The audit log"); }
  getAcl() { return unsupported("Reading the ACL"); }

  /**
   * Observe as GatewayHttp.observe does: ONVALUE(value, {id, name}); ONERROR(err) with
   * err.retrying (a lost connection: it reconnects by itself; a refusal: it gives up). Returns stop().
   */
  observe(thing, prop, onValue, onError = () => {}, { event = false } = {}) {
    let stopped = false;
    let stopStream = null;
    let attempt = 0;
    let wake = null;
    const report = (err, retrying) => {
      err.retrying = retrying;
      try { onError(err); } catch { /* the UI's problem */ }
    };
    const loop = async () => {
      while (!stopped) {
        let conn;
        try {
          conn = await this.connection();
        } catch (err) {
          if (stopped || this._closed) return;
          report(err, true);
          await new Promise((r) => { wake = r; setTimeout(r, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]); });
          continue;
        }
        if (stopped) return;
        const ended = await new Promise((resolve) => {
          wake = () => resolve(null);
          stopStream = conn.observe(thing, prop, (v, meta) => { attempt = 0; onValue(v, meta); }, resolve, { event });
        });
        stopStream = null;
        if (stopped || !ended || this._closed) return;
        const lost = ended.code === "network" || ended.code === "closed" || ended.code === "timeout";
        report(ended, lost);
        if (!lost) return;
        await new Promise((r) => { wake = r; setTimeout(r, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]); });
      }
    };
    loop();
    return () => {
      stopped = true;
      if (stopStream) stopStream();
      if (wake) wake();
    };
  }

  /** Close the connection; observations end (without reconnecting). */
  close() {
    this._closed = true;
    if (this.conn) this.conn.close();
  }
}
