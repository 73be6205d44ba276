// Finding a gateway by id away from home: ask peers that offer DHT lookups over WebSocket
// (docs/reach.md "DHT lookups over WebSocket"), verify every record here (records.js) and keep
// the newest valid one. A lookup peer is never trusted: it can withhold a record, not forge one.
//
//   client -> {"type":"get","id":GW_ID,"req":N}
//   peer   -> {"type":"record","req":N,"record":COMPACT_JWS} | {"type":"error","req":N,"error":CODE,"reason":TEXT}

import { fail } from "./util.js";
import { newer, verifyContactRecord } from "./records.js";

export const LOOKUP_PATH = "/dht/v1/lookup";
export const LOOKUP_TIMEOUT_MS = 15_000; // connect + one iterative DHT lookup (the peer's cap: 10 s)
export const MAX_ANSWER_BYTES = 16 * 1024; // a record is <= 4096 bytes
const ID = /^[A-Za-z0-9_-]{43}$/;

/** The lookup URL of a peer address: "ws://HOST:PORT" (the path is added) or a full URL. */
export function lookupUrl(address) {
  let url;
  try {
    url = new URL(String(address).trim());
  } catch {
    throw fail("bad_address", "a lookup peer is a ws:// or wss:// address, e.g. ws://203.0.113.7:4242");
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (!["ws:", "wss:"].includes(url.protocol) || !url.hostname || url.username || url.password) {
    throw fail("bad_address", "a lookup peer is a ws:// or wss:// address, e.g. ws://203.0.113.7:4242");
  }
  if (url.pathname === "/" || url.pathname === "") url.pathname = LOOKUP_PATH;
  url.hash = "";
  return url.toString();
}

/** The answer of one lookup peer: the record text, or LibError (the peer's code, or network). */
export function askPeer(url, gwId, { WebSocketImpl = globalThis.WebSocket, timeoutMs = LOOKUP_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    let ws;
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try { ws.close(); } catch { /* already closed */ }
      if (err) reject(err); else resolve(value);
    };
    const timer = setTimeout(() => finish(fail("timeout", `the lookup peer ${url} did not answer in time`, 504)), timeoutMs);
    try {
      ws = new WebSocketImpl(url);
    } catch (err) {
      clearTimeout(timer);
      reject(fail("network", `cannot open ${url} (${err.message})`, 0));
      return;
    }
    ws.onopen = () => ws.send(JSON.stringify({ type: "get", id: gwId, req: 1 }));
    ws.onerror = () => finish(fail("network", `cannot reach the lookup peer ${url}`, 0));
    ws.onclose = () => finish(fail("network", `the lookup peer ${url} closed the connection`, 0));
    ws.onmessage = (ev) => {
      const data = ev.data;
      if (typeof data !== "string" || data.length > MAX_ANSWER_BYTES) {
        finish(fail("bad_answer", "the lookup peer sent something else than a lookup answer", 502));
        return;
      }
      let msg;
      try { msg = JSON.parse(data); } catch { msg = null; }
      if (!msg || typeof msg !== "object" || msg.req !== 1) {
        finish(fail("bad_answer", "the lookup peer sent something else than a lookup answer", 502));
      } else if (msg.type === "record" && typeof msg.record === "string") {
        finish(null, msg.record);
      } else if (msg.type === "error" && typeof msg.error === "string") {
        const status = msg.error === "not_found" ? 404 : msg.error === "rate_limited" ? 429 : 502;
        finish(fail(msg.error.slice(0, 64), typeof msg.reason === "string" ? msg.reason.slice(0, 200) : msg.error, status));
      } else {
        finish(fail("bad_answer", "the lookup peer sent something else than a lookup answer", 502));
      }
    };
  });
}

/**
 * Find gateway GWID through the lookup peers LOOKUPURLS (asked in parallel): the newest record
 * that verifies, {id, jwk, addrs, seq, exp, td, text, sources}. Refused records are ignored
 * (reported in `refused`); with no valid record at all: LibError not_found, or the first
 * refusal/network code when nobody had a valid one.
 */
export async function findGateway(lookupUrls, gwId, { WebSocketImpl, timeoutMs, now } = {}) {
  if (typeof gwId !== "string" || !ID.test(gwId)) throw fail("bad_id", "a gateway id is 43 base64url characters");
  const urls = [...new Set((lookupUrls || []).map(lookupUrl))];
  if (!urls.length) throw fail("no_lookup_peer", "give at least one lookup peer address");
  const answers = await Promise.allSettled(urls.map((u) => askPeer(u, gwId, { WebSocketImpl, timeoutMs })));
  let best = null;
  const refused = [];
  for (let i = 0; i < answers.length; i++) {
    const a = answers[i];
    if (a.status === "rejected") {
      refused.push({ url: urls[i], code: a.reason.code || "network", reason: a.reason.reason || String(a.reason) });
      continue;
    }
    try {
      const rec = await verifyContactRecord(a.value, gwId, { now });
      if (!best || newer(rec, best)) best = rec;
    } catch (err) {
      refused.push({ url: urls[i], code: err.code, reason: err.reason });
    }
  }
  if (best) return { ...best, refused };
  const bad = refused.find((r) => r.code !== "not_found");
  if (!bad) throw fail("not_found", "no contact record for this gateway: is it running and online?", 404);
  const err = fail(bad.code, `no usable contact record (${bad.reason})`, 502);
  err.refused = refused;
  throw err;
}
