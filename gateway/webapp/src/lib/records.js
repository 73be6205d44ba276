// Signed DHT contact records (docs/dht-records.md), verified in the browser exactly as
// gateway/p2p/records.py verify_record does: same checks, same order, same refusal codes.
// A record comes from an untrusted lookup peer: nothing in it is used before it verifies.
//
//   header  {"alg":"ES256","typ":"streembit-record+jws","jwk":{kty,crv,x,y}}   (exactly these)
//   payload {"id","seq","iat","exp","kind":"contact","addrs":[ws/wss URLs],"td", ...}

import { compactVerify, errors } from "jose";
import { keyId, publicJwk } from "./keys.js";
import { b64uDecode, fail, fromUtf8, isInt, isObject, parseJsonObject, subtle } from "./util.js";

export const RECORD_TYP = "streembit-record+jws";
export const RECORD_ALG = "ES256";
export const MAX_RECORD_BYTES = 4096;
export const CLOCK_SKEW_S = 60;
export const MAX_LIFETIME_S = 7 * 86_400;
export const MAX_ADDRS = 8;
export const MAX_ADDR_LEN = 256;
export const MAX_TD_LEN = 256;
const MAX_DEPTH = 8; // gateway/p2p/records.py _RECORD_JSON
const HEADER_KEYS = ["alg", "jwk", "typ"];
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const BAD_URL_CHARS = /[\s\x00-\x1f\x7f]/;

const refuse = (code, reason) => fail(code, `DHT record refused: ${reason}`);

function depth(v) {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depth));
  if (isObject(v)) return 1 + Math.max(0, ...Object.values(v).map(depth));
  return 0;
}

function json(seg, what) {
  let text;
  try {
    text = fromUtf8(b64uDecode(seg, what, "record_malformed"));
  } catch (err) {
    throw err.code === "record_malformed" ? err : refuse("record_malformed", `${what} is not UTF-8`);
  }
  const value = parseJsonObject(text, what, "record_malformed");
  if (depth(value) > MAX_DEPTH) throw refuse("record_malformed", `${what} is nested too deeply`);
  return value;
}

function checkAddr(addr) {
  if (typeof addr !== "string" || addr.length === 0 || addr.length > MAX_ADDR_LEN) throw refuse("record_bad_field", "addrs entries must be short strings");
  if (BAD_URL_CHARS.test(addr)) throw refuse("record_bad_field", "addrs entry contains whitespace or control characters");
  let url;
  try {
    url = new URL(addr);
  } catch {
    throw refuse("record_bad_field", "addrs entry is not a URL");
  }
  if (!["ws:", "wss:"].includes(url.protocol) || !url.hostname || url.username || url.password) {
    throw refuse("record_bad_field", "addrs entry is not a ws:// or wss:// URL");
  }
  return addr;
}

function checkFields(c) {
  for (const name of ["id", "seq", "iat", "exp", "kind"]) if (!(name in c)) throw refuse("record_missing_field", `payload lacks ${name}`);
  if (typeof c.id !== "string" || !c.id) throw refuse("record_bad_field", "id must be a non-empty string");
  for (const name of ["seq", "iat", "exp"]) if (!isInt(c[name]) || c[name] < 0) throw refuse("record_bad_field", `${name} must be an integer in [0, 2**53)`);
  if (c.kind !== "contact") throw refuse("record_bad_field", "unknown record kind");
  for (const name of ["addrs", "td"]) if (!(name in c)) throw refuse("record_missing_field", `contact record lacks ${name}`);
  if (!Array.isArray(c.addrs) || c.addrs.length === 0 || c.addrs.length > MAX_ADDRS) throw refuse("record_bad_field", `addrs must be a list of 1 to ${MAX_ADDRS} URLs`);
  if (typeof c.td !== "string" || !c.td || c.td.length > MAX_TD_LEN) throw refuse("record_bad_field", `td must be a string of 1 to ${MAX_TD_LEN} characters`);
  if (c.exp <= c.iat) throw refuse("record_bad_field", "exp must be after iat");
  if (c.exp - c.iat > MAX_LIFETIME_S) throw refuse("record_bad_field", `lifetime exceeds ${MAX_LIFETIME_S} s`);
  c.addrs.forEach(checkAddr);
}

/**
 * Verify a contact record TEXT found under EXPECTEDID (the gateway id asked for) at NOW (unix
 * seconds, default the clock): {id, seq, iat, exp, kind, addrs, td, jwk, text}, or LibError
 * with the code of gateway/p2p/records.py (record_malformed, record_bad_signature, ...).
 */
export async function verifyContactRecord(text, expectedId, { now } = {}) {
  if (typeof text !== "string") throw refuse("record_not_text", "value is not text");
  if (!/^[\x00-\x7f]*$/.test(text)) throw refuse("record_malformed", "a compact JWS is ASCII");
  if (text.length > MAX_RECORD_BYTES) throw refuse("record_too_large", `${text.length} bytes > ${MAX_RECORD_BYTES}`);
  const parts = text.split(".");
  if (parts.length !== 3) throw refuse("record_malformed", "not a compact JWS (three dot-separated parts)");
  b64uDecode(parts[1], "payload", "record_malformed");
  b64uDecode(parts[2], "signature", "record_malformed");
  const header = json(parts[0], "header");
  if (header.alg !== RECORD_ALG) throw refuse("record_bad_alg", `alg is not ${RECORD_ALG}`);
  if (header.typ !== RECORD_TYP) throw refuse("record_malformed", `typ is not ${RECORD_TYP}`);
  if (Object.keys(header).sort().join() !== HEADER_KEYS.join()) throw refuse("record_malformed", "header members must be alg, typ, jwk");
  const jwk = header.jwk;
  if (!isObject(jwk) || jwk.kty !== "EC" || jwk.crv !== "P-256" || typeof jwk.x !== "string" || typeof jwk.y !== "string"
      || PRIVATE_MEMBERS.some((m) => m in jwk)) {
    throw refuse("record_bad_key", "header jwk is not an EC P-256 public key");
  }
  const pub = publicJwk(jwk);
  let verifyKey;
  try {
    verifyKey = await subtle().importKey("jwk", pub, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  } catch {
    throw refuse("record_bad_key", "header jwk is not a valid P-256 point");
  }
  const claims = json(parts[1], "payload");
  checkFields(claims);
  if ((await keyId(pub)) !== claims.id) throw refuse("record_key_mismatch", "id is not the thumbprint of the signing key");
  if (claims.id !== expectedId) throw refuse("record_wrong_dht_key", "record id is not the id looked up");
  const at = now ?? Date.now() / 1000;
  if (claims.exp <= at) throw refuse("record_expired", "the record has expired");
  if (claims.iat > at + CLOCK_SKEW_S) throw refuse("record_not_yet_valid", "iat is in the future");
  try {
    await compactVerify(text, verifyKey, { algorithms: [RECORD_ALG] });
  } catch (err) {
    if (err instanceof errors.JWSSignatureVerificationFailed) throw refuse("record_bad_signature", "signature does not verify");
    throw refuse("record_bad_signature", `signature check failed: ${err.message}`);
  }
  return { id: claims.id, seq: claims.seq, iat: claims.iat, exp: claims.exp, kind: claims.kind, addrs: [...claims.addrs], td: claims.td, jwk: pub, text };
}

/** Replacement order of two verified records (as Record.order): higher seq, then text. */
export function newer(a, b) {
  if (a.seq !== b.seq) return a.seq > b.seq;
  return a.text > b.text;
}
