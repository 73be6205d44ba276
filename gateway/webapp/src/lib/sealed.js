// Sealed peer messages (docs/protocol.md §2-§3), as gateway/messages/seal.py makes and opens
// them: a compact JWS (ES256, signed by the sender) inside a compact JWE (ECDH-ES + A256GCM,
// encrypted to the recipient with a fresh ephemeral key). All cryptography is jose's on
// WebCrypto; this module adds only the policy checks, in the gateway's order, with its codes.
//
//   JWE header {"alg":"ECDH-ES","enc":"A256GCM","cty":"streembit-msg+jws","kid":RECIPIENT_ID,"epk":…}
//   JWS header {"alg":"ES256","typ":"streembit-msg+jws","jwk":SENDER_PUBLIC_JWK,"kid":SENDER_ID}
//   claims     {"iss","aud","iat","exp","jti","typ", …body}

import { CompactEncrypt, compactDecrypt, compactVerify, errors } from "jose";
import { keyId, publicJwk, signCompact } from "./keys.js";
import { b64uDecode, fail, fromUtf8, isInt, isObject, jsonText, nowSeconds, parseJsonObject, peekHeader, randomB64u, subtle, utf8 } from "./util.js";

export const JWE_ALG = "ECDH-ES";
export const JWE_ENC = "A256GCM";
export const MSG_TYP = "streembit-msg+jws";
export const DEFAULT_TTL_S = 30;
export const MAX_TTL_S = 300;
export const MAX_MESSAGE_BYTES = 64 * 1024;
export const LEEWAY_S = 5;
export const ENVELOPE_CLAIMS = ["iss", "aud", "iat", "exp", "jti", "typ"];
export const TYPES = ["request", "reply", "event", "error"];
/** Operation -> the body fields it requires (gateway/messages/claims.py OPS). */
export const OPS = {
  things: [], td: ["thing"], readproperty: ["thing", "name"], writeproperty: ["thing", "name", "input"],
  invokeaction: ["thing", "name"], observeproperty: ["thing", "name"], unobserveproperty: ["thing", "name"],
  subscribeevent: ["thing", "name"], unsubscribeevent: ["thing", "name"], aclpush: ["input"],
  claim: ["input"], transfer: ["input"], punch: ["input"], auditcheckpoint: [], auditrecords: [],
};
const JWE_MEMBERS = ["alg", "enc", "epk", "kid", "cty", "apu", "apv"];
const JWS_MEMBERS = ["alg", "typ", "jwk", "kid"];
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const JTI = /^[A-Za-z0-9_-]{22,86}$/;
/** Ops that may carry the optional `dlg` claim, a delegation chain (claims.py DLG_OPS). */
export const DLG_OPS = ["things", "td", "readproperty", "writeproperty", "invokeaction", "observeproperty", "unobserveproperty", "subscribeevent", "unsubscribeevent"];
const MAX_DLG_LINKS = 4;
const MAX_DLG_LINK_BYTES = 4096;
const MAX_NAME_LEN = 256;
const MAX_AUDIT_PAGE = 500;
const MAX_AUDIT_ID = 2 ** 63 - 1; // SQLite's largest row id (claims.py MAX_AUDIT_ID)
/** The `ses` claim of a sealed Thing request: a session-key offer (docs/protocol.md §8). */
export const SESSION_VERSION = 1;
const SESSION_SECRET = /^[A-Za-z0-9_-]{43}$/; // base64url of 32 bytes

export const newJti = () => randomB64u(16);

// ------------------------------------------------------------------------ body checks
const missing = (name) => fail("missing_claim", `claim ${name} is missing`);
const badField = (name, expected) => fail("bad_format", `claim ${name} must be ${expected}`);

function need(body, name) {
  if (!(name in body) || body[name] === undefined) throw missing(name);
  return body[name];
}

function nameField(body, name) {
  const v = need(body, name);
  if (typeof v !== "string" || !v || v.length > MAX_NAME_LEN) throw badField(name, `a non-empty string of at most ${MAX_NAME_LEN} characters`);
}

export function checkJti(value, name = "jti") {
  if (typeof value !== "string" || !JTI.test(value)) throw badField(name, "base64url of 128 to 512 bits");
  return value;
}

export function checkType(typ) {
  if (typeof typ !== "string" || !TYPES.includes(typ)) throw fail("bad_type", `message typ ${typ} is not one of ${TYPES.join(", ")}`);
  return typ;
}

/** The body checks of gateway/messages/claims.py, run when sealing and when opening. */
export function checkBody(typ, body) {
  if (typ === "request") {
    const op = need(body, "op");
    if (typeof op !== "string" || !Object.hasOwn(OPS, op)) throw badField("op", `one of ${Object.keys(OPS).join(", ")}`);
    for (const f of OPS[op]) if (f === "input") need(body, "input"); else nameField(body, f);
    if ((op === "aclpush" || op === "transfer") && typeof body.input !== "string") throw badField("input", `a compact JWS for op ${op}`);
    if (op === "punch" && !isObject(body.input)) throw badField("input", "an object for op punch");
    if (op === "auditrecords" && "input" in body) {
      const page = body.input;
      const expected = `{"after": ROW_ID >= 0, "limit": 1..${MAX_AUDIT_PAGE}} (both optional) for op auditrecords`;
      if (!isObject(page) || Object.keys(page).some((k) => k !== "after" && k !== "limit")) throw badField("input", expected);
      const { after = 0, limit = MAX_AUDIT_PAGE } = page;
      if (!Number.isInteger(after) || after < 0 || after > MAX_AUDIT_ID) throw badField("input", expected);
      if (!isInt(limit) || limit < 1 || limit > MAX_AUDIT_PAGE) throw badField("input", expected);
    }
    if ("dlg" in body) {
      if (!DLG_OPS.includes(op)) throw badField("dlg", "absent: a delegation chain goes with Thing operations only");
      const d = body.dlg;
      if (!Array.isArray(d) || !d.length || d.length > MAX_DLG_LINKS || !d.every((x) => typeof x === "string" && x && x.length <= MAX_DLG_LINK_BYTES)) {
        throw badField("dlg", `a list of 1..${MAX_DLG_LINKS} delegation links (compact JWS)`);
      }
    }
    if ("ses" in body) { // claims.py _check_offer
      if (!DLG_OPS.includes(op)) throw badField("ses", "absent: a session-key offer goes with Thing operations only");
      const s = body.ses;
      const expected = `{"v": ${SESSION_VERSION}, "k": base64url of 32 bytes}`;
      if (!isObject(s) || Object.keys(s).sort().join() !== "k,v" || s.v !== SESSION_VERSION || typeof s.k !== "string" || !SESSION_SECRET.test(s.k)) {
        throw badField("ses", expected);
      }
      try { b64uDecode(s.k, "session secret"); } catch { throw badField("ses", expected); } // canonical only
    }
  } else if (typ === "reply") {
    checkJti(need(body, "re"), "re");
    const status = need(body, "status");
    if (!isInt(status) || status < 200 || status > 299) throw badField("status", "an integer 200-299");
  } else if (typ === "event") {
    nameField(body, "thing");
    nameField(body, "name");
    const seq = need(body, "seq");
    if (!isInt(seq) || seq < 0) throw badField("seq", "a non-negative integer");
    if ("re" in body) checkJti(body.re, "re");
  } else if (typ === "error") {
    const code = need(body, "code");
    if (typeof code !== "string" || !code || code.length > MAX_NAME_LEN) throw badField("code", "a short non-empty string");
    if ("re" in body) checkJti(body.re, "re");
    if ("message" in body && typeof body.message !== "string") throw badField("message", "a string");
    const status = body.status ?? 400;
    if (!isInt(status) || status < 400 || status > 599) throw badField("status", "an integer 400-599");
  }
}

// ------------------------------------------------------------------------------ seal
/**
 * Sign BODY as SENDER (key handle) and encrypt it to RECIPIENTJWK; the compact JWE.
 * TYP: request | reply | event | error. JTI: pass one (newJti) to match the reply's `re`.
 */
export async function seal(body, { sender, recipientJwk, typ, jti, now, ttl = DEFAULT_TTL_S }) {
  checkType(typ);
  if (!isInt(ttl) || ttl < 1 || ttl > MAX_TTL_S) throw fail("too_long_lived", `ttl must be 1..${MAX_TTL_S} seconds`);
  if (!isObject(body)) throw fail("bad_format", "the body must be an object");
  const reserved = ENVELOPE_CLAIMS.filter((c) => c in body);
  if (reserved.length) throw fail("bad_format", `body must not set envelope claims ${reserved.join(", ")}`);
  checkBody(typ, body);
  const recipient = publicJwk(recipientJwk);
  if (PRIVATE_MEMBERS.some((m) => m in recipientJwk)) throw fail("bad_key", "the recipient key must be public");
  const iat = nowSeconds(now);
  const claims = { iss: sender.id, aud: await keyId(recipient), iat, exp: iat + ttl, jti: jti === undefined ? newJti() : checkJti(jti), typ, ...body };
  const header = { alg: "ES256", typ: MSG_TYP, jwk: publicJwk(sender), kid: sender.id };
  const inner = await signCompact(sender, header, utf8(jsonText(claims)));
  let recipientKey;
  try {
    recipientKey = await subtle().importKey("jwk", recipient, { name: "ECDH", namedCurve: "P-256" }, true, []);
  } catch {
    throw fail("bad_key", "the recipient key is not a P-256 public key");
  }
  const token = await new CompactEncrypt(utf8(inner))
    .setProtectedHeader({ alg: JWE_ALG, enc: JWE_ENC, cty: MSG_TYP, kid: claims.aud })
    .encrypt(recipientKey);
  if (token.length > MAX_MESSAGE_BYTES) throw fail("too_large", `sealed message exceeds ${MAX_MESSAGE_BYTES} bytes`, 413);
  return token;
}

// ------------------------------------------------------------------------------ open
function checkPublicJwk(jwk, what) {
  if (!isObject(jwk)) throw fail("bad_key", `${what} is not a JWK object`);
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) throw fail("bad_key", `${what} contains private key material`);
  if (jwk.kty !== "EC" || jwk.crv !== "P-256") throw fail("bad_key", `${what} is not an EC P-256 key`);
  if (typeof jwk.x !== "string" || typeof jwk.y !== "string") throw fail("bad_key", `${what} lacks x/y coordinates`);
}

async function decrypt(token, recipient) {
  const parts = token.split(".");
  if (parts.length !== 5) throw fail("bad_format", "not a compact JWE (5 segments)");
  const h = peekHeader(token, "outer header");
  if ("zip" in h) throw fail("bad_alg", "compressed messages are not accepted");
  if (h.alg !== JWE_ALG || h.enc !== JWE_ENC) throw fail("bad_alg", `outer alg/enc must be ${JWE_ALG}/${JWE_ENC}`);
  const extra = Object.keys(h).filter((k) => !JWE_MEMBERS.includes(k));
  if (extra.length) throw fail("bad_format", `unexpected outer header members ${extra.sort().join(", ")}`);
  if (h.cty !== MSG_TYP) throw fail("bad_format", `outer cty must be ${MSG_TYP}`);
  if (!("kid" in h)) throw fail("bad_format", "outer header lacks kid");
  if (h.kid !== recipient.id) throw fail("wrong_audience", "message is encrypted to another recipient");
  checkPublicJwk(h.epk, "ephemeral key");
  if (parts[1]) throw fail("bad_format", "ECDH-ES direct agreement has an empty encrypted key");
  if (b64uDecode(parts[2], "iv").length !== 12) throw fail("bad_format", "iv must be 96 bits");
  if (b64uDecode(parts[4], "tag").length !== 16) throw fail("bad_format", "tag must be 128 bits");
  b64uDecode(parts[3], "ciphertext");
  try {
    const out = await compactDecrypt(token, recipient.ecdhKey, { keyManagementAlgorithms: [JWE_ALG], contentEncryptionAlgorithms: [JWE_ENC] });
    return fromUtf8(out.plaintext);
  } catch {
    throw fail("decrypt_failed", "cannot decrypt (wrong key or tampered)");
  }
}

async function verify(inner) {
  if (inner.split(".").length !== 3) throw fail("bad_format", "the JWE does not contain a compact JWS");
  const h = peekHeader(inner, "inner header");
  if (h.alg !== "ES256") throw fail("bad_alg", `inner alg must be ES256, got ${h.alg}`);
  if (h.typ !== MSG_TYP) throw fail("bad_type", `inner typ must be ${MSG_TYP}`);
  const extra = Object.keys(h).filter((k) => !JWS_MEMBERS.includes(k));
  if (extra.length) throw fail("bad_format", `unexpected inner header members ${extra.sort().join(", ")}`);
  if (!("jwk" in h)) throw fail("bad_key", "inner header lacks the sender jwk");
  checkPublicJwk(h.jwk, "sender jwk");
  const jwk = publicJwk(h.jwk);
  let verifyKey;
  try {
    verifyKey = await subtle().importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  } catch {
    throw fail("bad_key", "sender jwk is not a valid P-256 public key");
  }
  const id = await keyId(jwk);
  if (!("kid" in h)) throw fail("bad_format", "inner header lacks kid");
  if (h.kid !== id) throw fail("issuer_mismatch", "inner kid is not the thumbprint of the jwk");
  let payload;
  try {
    ({ payload } = await compactVerify(inner, verifyKey, { algorithms: ["ES256"] }));
  } catch (err) {
    if (err instanceof errors.JWSSignatureVerificationFailed) throw fail("bad_signature", "signature does not verify");
    throw fail("bad_format", "inner JWS is malformed");
  }
  let text;
  try {
    text = fromUtf8(payload);
  } catch {
    throw fail("bad_format", "claims are not UTF-8");
  }
  return { sender: { id, jwk }, claims: parseJsonObject(text, "claims") };
}

export function checkClaims(claims, sender, recipient, now, leeway) {
  for (const name of ENVELOPE_CLAIMS) if (!(name in claims)) throw missing(name);
  if (claims.iss !== sender.id) throw fail("issuer_mismatch", "iss is not the thumbprint of the signing key");
  if (claims.aud !== recipient.id) throw fail("wrong_audience", "message is addressed to another peer");
  checkType(claims.typ);
  checkJti(claims.jti);
  const { iat, exp } = claims;
  if (!isInt(iat)) throw badField("iat", "an integer (seconds)");
  if (!isInt(exp)) throw badField("exp", "an integer (seconds)");
  if (exp <= iat) throw fail("bad_format", "exp must be after iat");
  if (exp - iat > MAX_TTL_S) throw fail("too_long_lived", `lifetime exceeds ${MAX_TTL_S} s`);
  if (iat > now + leeway) throw fail("not_yet_valid", "iat is in the future");
  if (now >= exp + leeway) throw fail("expired", "message has expired");
  checkBody(claims.typ, claims);
}

/**
 * Decrypt, verify and check a sealed message addressed to RECIPIENT (key handle), as
 * gateway.messages.open_sealed does: {sender: {id, jwk}, claims}, or LibError with the
 * gateway's code. REPLAY (a ReplayCache) records the message once everything else passed.
 */
export async function openSealed(token, { recipient, replay = null, now, leeway = LEEWAY_S, maxSize = MAX_MESSAGE_BYTES }) {
  if (typeof token !== "string") throw fail("bad_format", "message must be text");
  if (token.length > maxSize) throw fail("too_large", `message exceeds ${maxSize} bytes`, 413);
  if (!/^[\x00-\x7f]*$/.test(token)) throw fail("bad_format", "message is not ASCII");
  const at = now ?? Date.now() / 1000;
  const inner = await decrypt(token, recipient);
  const { sender, claims } = await verify(inner);
  checkClaims(claims, sender, recipient, at, leeway);
  if (replay) replay.checkAndAdd(sender.id, claims.jti, claims.exp, at);
  return { sender, claims };
}

/** Remembers accepted (iss, jti) until exp + leeway; bounded, fails closed when full. */
export class ReplayCache {
  constructor({ maxEntries = 30_000, leeway = LEEWAY_S } = {}) {
    this.maxEntries = maxEntries;
    this.leeway = leeway;
    this.seen = new Map(); // "iss jti" -> forget-after (unix seconds)
  }

  purge(now) {
    for (const [k, until] of this.seen) if (now >= until) this.seen.delete(k);
  }

  checkAndAdd(iss, jti, exp, now = Date.now() / 1000) {
    const k = `${iss} ${jti}`;
    const until = this.seen.get(k);
    if (until !== undefined && now < until) throw fail("replayed", "message was already accepted");
    if (this.seen.size >= this.maxEntries) this.purge(now);
    if (this.seen.size >= this.maxEntries) throw fail("replay_cache_full", "replay cache is full; retry later", 503);
    this.seen.set(k, exp + this.leeway);
  }
}
