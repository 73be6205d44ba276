// The gateway's HTTP binding (docs/http-binding.md) for one key, with self-signed bearer
// tokens (tokens.js). Every failure is a GatewayError {code, reason, status} with readable text:
// the gateway's own {"error", "reason"} when it sent one, else "network" / "http_<status>".
//
// Observation uses the `…/sse` routes through fetch() streaming: EventSource cannot send the
// Authorization header. The text/event-stream is parsed here with bounded buffers.

import { makeToken, tokenSource } from "./tokens.js";
import { HTTP_HEADER as DLG_HEADER, SEPARATOR as DLG_SEPARATOR } from "./delegation.js";

export const REQUEST_TIMEOUT_MS = 15_000;
export const MAX_SSE_LINE = 64 * 1024; // one SSE line (a JSON value of a property)
export const MAX_SSE_EVENT = 256 * 1024; // one event's data
export const STREAM_TOKEN_TTL_S = 300; // a stream ends when its token expires, then reconnects
const RETRY_MS = [1000, 2000, 5000, 10_000, 30_000];
const FETCH_OPTS = { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer", redirect: "error" };

export class GatewayError extends Error {
  constructor(status, code, reason) {
    const text = reason || code || `HTTP ${status}`;
    super(status ? `${text} (${status} ${code})` : `${text} (${code})`);
    this.name = "GatewayError";
    this.status = status;
    this.code = code;
    this.reason = text;
  }

  toJSON() {
    return { code: this.code, reason: this.reason, status: this.status };
  }
}

/** A GatewayError from a failed Response (JSON body {"error", "reason"} or plain text). */
async function errorOf(resp) {
  let body = null;
  let text = "";
  try {
    text = (await resp.text()).slice(0, 2000);
    body = JSON.parse(text);
  } catch {
    /* not JSON: aiohttp's plain "404: Not Found" and the like */
  }
  if (body && typeof body.error === "string") return new GatewayError(resp.status, body.error, typeof body.reason === "string" ? body.reason : "");
  return new GatewayError(resp.status, `http_${resp.status}`, text.trim() || resp.statusText);
}

const seg = (s) => encodeURIComponent(s);

export class GatewayHttp {
  /**
   * BASEURL: e.g. "http://192.168.1.20:8080" (or location.origin); KEY: a key handle.
   * DELEGATION: a chain of links (first link first) sent with every Thing request in the
   * Streembit-Delegation header, the token then carrying this key's public key (docs/acl.md §6.5).
   */
  constructor(baseUrl, key, gatewayId, { tokenTtl = 60, fetchImpl, delegation = null } = {}) {
    this.base = String(baseUrl).replace(/\/+$/, "");
    this.key = key;
    this.gatewayId = gatewayId;
    this.delegation = delegation && delegation.length ? [...delegation] : null;
    this.tokens = tokenSource(key, gatewayId, { ttl: tokenTtl, embedKey: Boolean(this.delegation) });
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  async _send(method, path, { body, auth = true, token = null, text = null, signal, timeout = REQUEST_TIMEOUT_MS } = {}) {
    const headers = { Accept: "application/json" };
    if (auth) headers.Authorization = `Bearer ${token || (await this.tokens.get())}`;
    if (auth && this.delegation && path.startsWith("/things/")) headers[DLG_HEADER] = this.delegation.join(DLG_SEPARATOR);
    let payload;
    if (text !== null) {
      payload = text;
      headers["Content-Type"] = "text/plain";
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const ctrl = new AbortController();
    const timer = timeout ? setTimeout(() => ctrl.abort(), timeout) : null;
    const onAbort = () => ctrl.abort();
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await this.fetch(this.base + path, { ...FETCH_OPTS, method, headers, body: payload, signal: ctrl.signal });
    } catch (err) {
      const reason = ctrl.signal.aborted && !(signal && signal.aborted) ? "the gateway did not answer in time" : `cannot reach the gateway (${err.message})`;
      throw new GatewayError(0, ctrl.signal.aborted ? "timeout" : "network", reason);
    } finally {
      if (timer) clearTimeout(timer);
      if (signal && timeout) signal.removeEventListener("abort", onAbort); // a stream (timeout 0) still needs it
    }
  }

  /** Send and decode: the JSON value, or null for 204 / an empty body. */
  async _json(method, path, opts) {
    const resp = await this._send(method, path, opts);
    if (!resp.ok) {
      if (resp.status === 401) this.tokens.reset();
      throw await errorOf(resp);
    }
    const text = await resp.text();
    if (resp.status === 204 || !text.trim()) return null;
    try {
      return JSON.parse(text);
    } catch {
      throw new GatewayError(resp.status, "bad_answer", "the gateway's answer is not JSON");
    }
  }

  things() { return this._json("GET", "/things", { auth: false }); }
  td(name) { return this._json("GET", `/things/${seg(name)}`, { auth: false }); }
  gatewayIdOf() { return this._json("GET", "/status/id", { auth: false }).then((b) => b && b.id); }
  readAll(thing) { return this._json("GET", `/things/${seg(thing)}/properties`); }
  read(thing, prop) { return this._json("GET", `/things/${seg(thing)}/properties/${seg(prop)}`); }
  write(thing, prop, value) { return this._json("PUT", `/things/${seg(thing)}/properties/${seg(prop)}`, { body: value === undefined ? null : value }); }
  invoke(thing, action, input) { return this._json("POST", `/things/${seg(thing)}/actions/${seg(action)}`, { body: input }); }
  /** PUT /acl (owner only): {version, grants}. */
  putAcl(jws) { return this._json("PUT", "/acl", { text: jws }); }
  /** GET /acl (owner only): {version, acl, jws}; give it to acl.parseAcl. */
  getAcl() { return this._json("GET", "/acl"); }
  /** GET /acl/mine: this key's own rights now. */
  mine() { return this._json("GET", "/acl/mine"); }
  /** GET /status.json (owner or a granted key). */
  status() { return this._json("GET", "/status.json"); }

  /** GET /audit (owner only): {records: [...newest first], limit, scanned}. PARAMS: subject, thing, allowed, limit. */
  audit(params = {}) {
    const q = new URLSearchParams();
    for (const k of ["subject", "thing", "allowed", "limit"]) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== "") q.set(k, String(params[k]));
    }
    const qs = q.toString();
    return this._json("GET", `/audit${qs ? `?${qs}` : ""}`);
  }

  /**
   * Observe property PROP of THING over SSE: ONVALUE(value, {id, name}) per notification.
   * ONERROR(GatewayError) on every failure; `err.retrying` tells whether it reconnects by
   * itself (network trouble, token expiry, 5xx) or has given up (401, 403, 404, ...).
   * Returns stop(). EVENT: observe an event (…/events/{e}/sse) instead of a property.
   */
  observe(thing, prop, onValue, onError = () => {}, { event = false } = {}) {
    const path = `/things/${seg(thing)}/${event ? "events" : "properties"}/${seg(prop)}/sse`;
    const ctrl = new AbortController();
    let attempt = 0;
    const report = (err, retrying) => {
      err.retrying = retrying;
      try { onError(err); } catch { /* the UI's problem */ }
    };
    const loop = async () => {
      while (!ctrl.signal.aborted) {
        let retry = true;
        const started = Date.now();
        const once = new AbortController(); // this connection; stop() aborts it too
        const link = () => once.abort();
        ctrl.signal.addEventListener("abort", link, { once: true });
        try {
          const token = await makeToken(this.key, { gatewayId: this.gatewayId, ttl: STREAM_TOKEN_TTL_S, embedKey: Boolean(this.delegation) });
          const resp = await this._send("GET", path, { token, signal: once.signal, timeout: 0 });
          if (!resp.ok) {
            const err = await errorOf(resp);
            retry = resp.status >= 500 || resp.status === 429;
            if (resp.status === 401) this.tokens.reset();
            throw err;
          }
          const end = await readEvents(resp, (ev) => {
            if (ev.event === "error") return ev; // the gateway ends the stream after it
            attempt = 0;
            let value;
            try { value = JSON.parse(ev.data); } catch { value = ev.data; }
            try { onValue(value, { id: ev.id, name: ev.event }); } catch { /* the UI's problem */ }
            return null;
          });
          if (end) {
            let body = {};
            try { body = JSON.parse(end.data); } catch { /* keep {} */ }
            if (body.error !== "unauthenticated") {
              retry = false; // forbidden: access revoked
              throw new GatewayError(403, body.error || "forbidden", body.reason || "access revoked");
            }
            if (Date.now() - started > 10_000) continue; // the token expired: a fresh one, at once
          }
        } catch (err) {
          if (ctrl.signal.aborted) return;
          const e = err instanceof GatewayError ? err : new GatewayError(0, "network", `the stream broke (${err.message})`);
          report(e, retry);
          if (!retry) return;
        } finally {
          ctrl.signal.removeEventListener("abort", link);
          once.abort(); // never leave a connection behind
        }
        const wait = RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)];
        await new Promise((r) => {
          const done = () => { clearTimeout(t); ctrl.signal.removeEventListener("abort", done); r(); };
          const t = setTimeout(done, wait);
          ctrl.signal.addEventListener("abort", done, { once: true });
        });
      }
    };
    loop();
    return () => ctrl.abort();
  }
}

/**
 * Read a text/event-stream RESPONSE, calling ONEVENT({event, data, id}) per event; stops early
 * when ONEVENT returns something (returned). Lines and events are bounded (MAX_SSE_*).
 */
export async function readEvents(resp, onEvent) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let ev = { event: "message", data: [], id: null, size: 0 };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        if (buf[nl] === "\r" && nl === buf.length - 1) break; // a CR at the end: wait for a possible LF
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (ev.data.length) {
            const out = onEvent({ event: ev.event, data: ev.data.join("\n"), id: ev.id });
            if (out) return out;
          }
          ev = { event: "message", data: [], id: ev.id, size: 0 };
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: ": streembit", ": keep-alive"
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "data") {
          ev.size += val.length;
          if (ev.size > MAX_SSE_EVENT) throw new GatewayError(0, "too_large", "an event of the stream is too large");
          ev.data.push(val);
        } else if (field === "event") ev.event = val;
        else if (field === "id") ev.id = val;
      }
      if (buf.length > MAX_SSE_LINE) throw new GatewayError(0, "too_large", "a line of the stream is too long");
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
