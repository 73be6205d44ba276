// A guest's public key as the owner pastes or scans it: a P-256 JWK (JSON, what the Key screen
// shows and its QR holds), an SPKI PEM (`-----BEGIN PUBLIC KEY-----`, e.g. `streembit-peer
// keygen`'s .pub), or a key id already in the ACL. Returns {id, jwk}; throws in words.

import { thumbprint } from "./core.js";

const MAX_TEXT = 4096;
const B64URL = /^[A-Za-z0-9_-]{43}$/;

function fromJwk(obj) {
  const jwk = obj && obj.jwk ? obj.jwk : obj;
  if (!jwk || jwk.kty !== "EC" || jwk.crv !== "P-256" || !B64URL.test(jwk.x || "") || !B64URL.test(jwk.y || "")) {
    throw new Error("not a P-256 public key (JWK with kty EC, crv P-256, x, y)");
  }
  if (jwk.d) throw new Error("this is a PRIVATE key: ask the guest for their public key only");
  return { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y };
}

async function fromPem(text) {
  const m = text.match(/-----BEGIN PUBLIC KEY-----([\s\S]+?)-----END PUBLIC KEY-----/);
  if (!m) throw new Error("not a public key PEM");
  const der = Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  let key;
  try {
    key = await crypto.subtle.importKey("spki", der, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]);
  } catch {
    throw new Error("not a P-256 public key");
  }
  return fromJwk(await crypto.subtle.exportKey("jwk", key));
}

/** Parse TEXT; KNOWN maps key ids to JWKs of keys already granted (for a bare key id). */
export async function parsePublicKey(text, known = new Map()) {
  const t = String(text || "").trim();
  if (!t) throw new Error("paste the guest's public key first");
  if (t.length > MAX_TEXT) throw new Error("that text is too long for a public key");
  if (/PRIVATE KEY/.test(t)) throw new Error("this is a PRIVATE key: ask the guest for their public key only");
  let jwk;
  if (t.startsWith("{")) {
    let obj;
    try { obj = JSON.parse(t); } catch { throw new Error("not valid JSON"); }
    jwk = fromJwk(obj);
  } else if (t.startsWith("-----BEGIN")) {
    jwk = await fromPem(t);
  } else if (B64URL.test(t)) {
    if (!known.has(t)) {
      throw new Error("a key id alone is not enough for a new guest: paste their public key (the text under their QR code)");
    }
    return { id: t, jwk: known.get(t) };
  } else {
    throw new Error("not a public key: paste the JSON shown on the guest's Key screen, or a PEM");
  }
  return { id: await thumbprint(jwk), jwk };
}
