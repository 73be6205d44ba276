// The one place where the UI meets the core library (src/lib/): screens import from here, so
// a change of a library signature is fixed in this file only.

import * as keys from "../lib/keys.js";
import { idbStore } from "../lib/store.js";
import * as acl from "../lib/acl.js";
import { GatewayError, GatewayHttp } from "../lib/http.js";

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

/** Everything the screens use to talk to the gateway (same origin), for one key. */
export class Gateway {
  constructor(key, id) {
    this.key = key;
    this.id = id;
    this.http = new GatewayHttp(globalThis.location.origin, key, id);
  }

  things() { return this.http.things(); }
  read(thing, prop) { return this.http.read(thing, prop); }
  readAll(thing) { return this.http.readAll(thing); }
  write(thing, prop, value) { return this.http.write(thing, prop, value); }
  invoke(thing, action, input) { return this.http.invoke(thing, action, input); }
  observe(thing, prop, onValue, onError) { return this.http.observe(thing, prop, onValue, onError); }
  status() { return this.http.status(); }
  audit(params) { return this.http.audit(params); }
  putAcl(jws) { return this.http.putAcl(jws); }
  /** What this key may do now: GET /acl/mine. */
  mine() { return this.http.mine(); }

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
