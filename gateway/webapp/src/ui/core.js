// The one place where the UI meets the core library (src/lib/): screens import from here, so
// a change of a library signature is fixed in this file only.

import * as keys from "../lib/keys.js";
import { deleteChain, getChain, idbStore, putChain } from "../lib/store.js";
import * as dlg from "../lib/delegation.js";
import * as acl from "../lib/acl.js";
import { GatewayError, GatewayHttp } from "../lib/http.js";
import { GatewayP2P } from "../lib/p2p.js";
import { lookupUrl } from "../lib/find.js";

export { GatewayError };

/** WebCrypto is there only in a secure context (https, http://localhost, http://127.0.0.1). */
export function secureOk() {
  return Boolean(globalThis.isSecureContext && globalThis.crypto && globalThis.crypto.subtle);
}

// --------------------------------------------------------------------------- keys
const store = idbStore(); // IndexedDB of this origin: non-extractable CryptoKeys only

const pass = (p) => (p ? p : null);
export const loadKey = () => keys.loadKey(store);
/** A new key; with PASSPHRASE an encrypted backup is kept (else the key can never leave). */
export const createKey = (passphrase, replace = false) =>
  keys.createKey(store, { passphrase: pass(passphrase), replace });
export const importPem = (pem, passphrase, replace = false) =>
  keys.importPkcs8Pem(store, pem, { passphrase: pass(passphrase), replace });
export const importBackup = (text, passphrase, replace = false) =>
  keys.importBackup(store, text, passphrase, { replace });
export const exportBackup = (key, passphrase) => keys.exportBackup(key, passphrase);

/** {id, jwk, hasBackup} of KEY: what may be shown or shared. */
export function keyInfo(key) {
  const d = keys.describeKey(key);
  return { id: d.id, jwk: d.publicJwk, hasBackup: d.hasBackup };
}

/** The key id (RFC 7638 thumbprint) of a public JWK, as the gateway computes it. */
export const thumbprint = (jwk) => keys.keyId(jwk);

// ------------------------------------------------------------------------ gateway
/** The gateway's id (the audience of every token): public, GET /status/id. */
export async function gatewayId() {
  let resp;
  try {
    resp = await fetch("/status/id", { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" });
  } catch (err) {
    throw new GatewayError(0, "network", `cannot reach the gateway (${err.message})`);
  }
  const body = resp.ok ? await resp.json().catch(() => null) : null;
  if (!body || typeof body.id !== "string") throw new GatewayError(resp.status, `http_${resp.status}`, "no gateway id");
  return body.id;
}

// ------------------------------------------------------------------ away from home
// The "Away from home" setting (not secret, so in localStorage): {on, gatewayId, lookup}.
// With it on, the app finds the gateway by id through the lookup peer and talks to it over
// the P2P binding (sealed messages over a WebSocket) instead of same-origin HTTP.
const AWAY_KEY = "streembit-away";
const ID = /^[A-Za-z0-9_-]{43}$/;

/** The saved setting: {on, gatewayId, lookup} (defaults: off, empty). */
export function awaySettings() {
  let saved = null;
  try {
    saved = JSON.parse(globalThis.localStorage.getItem(AWAY_KEY) || "null");
  } catch { /* unreadable: the defaults */ }
  const s = saved && typeof saved === "object" ? saved : {};
  return {
    on: s.on === true,
    gatewayId: typeof s.gatewayId === "string" ? s.gatewayId : "",
    lookup: typeof s.lookup === "string" ? s.lookup : "",
  };
}

/** Check and save the setting; refuses a bad id or address (LibError bad_id / bad_address). */
export function saveAwaySettings({ on, gatewayId, lookup }) {
  const s = { on: Boolean(on), gatewayId: String(gatewayId || "").trim(), lookup: String(lookup || "").trim() };
  if (s.on || s.gatewayId) {
    if (!ID.test(s.gatewayId)) throw new GatewayError(0, "bad_id", "a gateway id is 43 characters (letters, digits, - and _)");
  }
  if (s.on || s.lookup) lookupUrl(s.lookup); // throws bad_address
  globalThis.localStorage.setItem(AWAY_KEY, JSON.stringify(s));
  return s;
}

/**
 * Everything the screens use to talk to the gateway, for one key: same-origin HTTP (the
 * default, on the gateway's network), or P2P through a lookup peer when AWAY.on.
 */
export class Gateway {
  /** CHAIN: the parsed links of a delegation chain this key holds (readChain), or null. */
  constructor(key, id, away = null, chain = null) {
    this.key = key;
    this.id = id;
    this.away = Boolean(away && away.on);
    this.chain = chain && chain.length ? chain : null;
    const delegation = this.chain ? this.chain.map((l) => l.text) : null;
    this.http = this.away
      ? new GatewayP2P(key, id, { lookup: [away.lookup], delegation })
      : new GatewayHttp(globalThis.location.origin, key, id, { delegation });
  }

  /** How this handle reaches the gateway, in words. */
  transport() {
    if (!this.away) return "on the local network (HTTP)";
    const conn = this.http.conn;
    return conn && !conn.closed ? `away from home, P2P via ${conn.url}` : "away from home (P2P)";
  }

  /** Drop the connection (a P2P WebSocket); the HTTP transport holds none. */
  close() { if (this.away) this.http.close(); }

  things() { return this.http.things(); }
  read(thing, prop) { return this.http.read(thing, prop); }
  readAll(thing) { return this.http.readAll(thing); }
  write(thing, prop, value) { return this.http.write(thing, prop, value); }
  invoke(thing, action, input) { return this.http.invoke(thing, action, input); }
  observe(thing, prop, onValue, onError) { return this.http.observe(thing, prop, onValue, onError); }
  status() { return this.http.status(); }
  audit(params) { return this.http.audit(params); }
  putAcl(jws) { return this.http.putAcl(jws); }
  /**
   * What this key may do now: GET /acl/mine; with a chain, what its last link allows on the
   * gateway's Things (role "delegated"; the gateway decides every request with the chain).
   */
  async mine() {
    if (!this.chain) return this.http.mine();
    return dlg.chainRights(this.chain, await this.things(), this.key.id);
  }

  /** The installed ACL to edit, its owner signature checked with this (owner) key. */
  async editableAcl() {
    const answer = await this.http.getAcl();
    return { version: answer.version, doc: await acl.parseAcl(answer, { owner: this.key, gatewayId: this.id }) };
  }
}

// ---------------------------------------------------------------------------- ACL
export const PRESETS = acl.PRESETS;
/** A checked grant of preset NAME for JWK: OPTS {things, nbf?, exp?, schedule?}. */
export const presetGrant = (name, jwk, opts) => acl.presetGrant(name, jwk, { ...opts, role: "user" });
export const withGrant = (doc, grant) => acl.withGrant(doc, grant);
export const withoutSubject = (doc, sub) => acl.withoutSubject(doc, sub);
export const checkSchedule = (spec) => acl.checkSchedule(spec);
export const signAcl = (key, doc) => acl.signAcl(key, doc);

// ------------------------------------------------------------ passing access on
export const { grantBound, linkBound, summary: chainSummary, MAX_LIFETIME_S, SEPARATOR } = dlg;

/** The chain this key holds for gateway GATEWAYID (parsed and checked again), or null. */
export async function loadChain(key, gatewayId) {
  const links = key && gatewayId ? await getChain(store, gatewayId) : null;
  if (!links) return null;
  try {
    return await dlg.readChain(links, { gatewayId, holder: key.id });
  } catch {
    return null; // e.g. another key now: the chain is not this key's
  }
}

/** Check a chain passed on to KEY (its text: links separated by "~" or lines) and keep it. */
export async function importChain(text, key, gatewayId) {
  const links = await dlg.readChain(text, { gatewayId, holder: key.id });
  const { exp } = dlg.summary(links);
  if (exp <= Date.now() / 1000) throw new GatewayError(403, "delegation_expired", "this access has already ended");
  await putChain(store, gatewayId, links.map((l) => l.text));
  return links;
}

export const forgetChain = (gatewayId) => deleteChain(store, gatewayId);

/** Sign a link (delegation.js signLink, checked against BOUND first); the new link's text. */
export const signLink = (key, opts) => dlg.signLink(key, opts);
