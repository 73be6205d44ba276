// Session keys (docs/protocol.md §8), as gateway/messages/sessionkeys.py makes and opens them:
// after one sealed exchange, one AES-256-GCM key per direction for the rest of a connection.
// The keys come from WebCrypto's HKDF-SHA256; a frame is jose's compact JWE with alg "dir" and
// enc "A256GCM" whose plaintext is the claims JSON itself. This module adds only the policy
// checks, in the gateway's order, with its codes.
//
//   offer (inside a sealed Thing request)  ses: {"v": 1, "k": base64url(32 random bytes)}
//   announcement (in the sealed answer)    ses: {"id": SID (16 bytes), "ttl": SECONDS}
//   frame header {"alg":"dir","enc":"A256GCM","kid":SID,"cty":"streembit-msg+json"}

import { CompactEncrypt, compactDecrypt } from "jose";
import { DEFAULT_TTL_S, DLG_OPS, ENVELOPE_CLAIMS, LEEWAY_S, MAX_MESSAGE_BYTES, MAX_TTL_S, checkBody, checkClaims, checkJti, checkType, newJti } from "./sealed.js";
import { b64uDecode, fail, fromUtf8, isInt, isObject, jsonText, nowSeconds, parseJsonObject, peekHeader, randomB64u, subtle, utf8 } from "./util.js";

export const SESSION_ALG = "dir";
export const SESSION_ENC = "A256GCM";
export const SESSION_CTY = "streembit-msg+json";
const HEADER_MEMBERS = ["alg", "enc", "kid", "cty"];
export const MAX_SESSION_TTL_S = 3600;
/** A peer stops sending on a session this long before its TTL (a request's lifetime + 2 leeways). */
export const RENEW_MARGIN_S = DEFAULT_TTL_S + 2 * LEEWAY_S;
/** The shortest announced TTL a peer accepts: it must leave time to send on the session. */
export const MIN_SESSION_TTL_S = RENEW_MARGIN_S + 1;
export const TO_GATEWAY = "peer-to-gateway";
export const TO_PEER = "gateway-to-peer";
const SID = /^[A-Za-z0-9_-]{22}$/;
/** A monotonic clock in seconds (the session's lifetime does not follow wall-clock jumps). */
const monotonic = () => globalThis.performance.now() / 1000;

/** A fresh offer claim for a sealed request, and the secret to keep for the keys: {offer, secret}. */
export function newOffer() {
  const k = randomB64u(32);
  return { offer: { v: 1, k }, secret: b64uDecode(k, "session secret") };
}

/** {sid, ttl} of the `ses` claim of the gateway's answer; bad_format when malformed. */
export function parseAnnouncement(value) {
  if (!isObject(value) || Object.keys(value).sort().join() !== "id,ttl") throw fail("bad_format", 'ses must be {"id": SID, "ttl": SECONDS}');
  const { id, ttl } = value;
  if (typeof id !== "string" || !SID.test(id)) throw fail("bad_format", "ses.id must be base64url of 16 bytes");
  b64uDecode(id, "ses.id"); // canonical form only (bad_format)
  if (!isInt(ttl) || ttl < MIN_SESSION_TTL_S || ttl > MAX_SESSION_TTL_S) throw fail("bad_format", `ses.ttl must be ${MIN_SESSION_TTL_S}..${MAX_SESSION_TTL_S} seconds`);
  return { sid: id, ttl };
}

/** The 32-byte key of one DIRECTION (TO_GATEWAY | TO_PEER): HKDF-SHA256 (RFC 5869) of SECRET. */
export async function deriveKey(secret, sid, direction, peerId, gatewayId) {
  const ikm = await subtle().importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const info = utf8(`streembit-session/1|${direction}|${peerId}|${gatewayId}`);
  const salt = b64uDecode(sid, "session id");
  return new Uint8Array(await subtle().deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, ikm, 256));
}

/** The `alg` of a compact frame's header, or null (cheap dispatch: session frame or sealed). */
export function frameAlg(token) {
  try {
    const alg = peekHeader(token, "header").alg;
    return typeof alg === "string" ? alg : null;
  } catch {
    return null;
  }
}

/** One end of a session: seals to and opens from the other end (ids LOCALID, REMOTEID). */
export class SessionKeys {
  /**
   * The keys of one end (ROLE "peer" | "gateway") for SECRET and SID. The gateway uses and
   * accepts the session for TTL s; a peer stops sending RENEW_MARGIN_S earlier and accepts
   * the gateway's frames a leeway later.
   */
  static async derive(secret, sid, { role, localId, remoteId, ttl }) {
    const [peer, gateway] = role === "gateway" ? [remoteId, localId] : [localId, remoteId];
    const toGw = await deriveKey(secret, sid, TO_GATEWAY, peer, gateway);
    const toPeer = await deriveKey(secret, sid, TO_PEER, peer, gateway);
    const start = monotonic();
    const [send, recv, sendS, acceptS] = role === "gateway"
      ? [toPeer, toGw, ttl, ttl]
      : [toGw, toPeer, ttl - RENEW_MARGIN_S, ttl + LEEWAY_S];
    return new SessionKeys(sid, localId, remoteId, send, recv, start + sendS, start + acceptS);
  }

  constructor(sid, localId, remoteId, sendKey, recvKey, sendUntil, acceptUntil) {
    Object.assign(this, { sid, localId, remoteId, sendUntil, acceptUntil });
    this._send = sendKey;
    this._recv = recvKey;
  }

  /** Whether this end may still send on the session. */
  usable() { return monotonic() < this.sendUntil; }

  /** Send nothing more on the session; frames of it still due open until they expire. */
  retire() { this.sendUntil = 0; }

  /** BODY as a session frame to the other end; refuses what `seal` would refuse. */
  async seal(body, typ, { jti, now, ttl = DEFAULT_TTL_S } = {}) {
    checkType(typ);
    if (!isInt(ttl) || ttl < 1 || ttl > MAX_TTL_S) throw fail("too_long_lived", `ttl must be 1..${MAX_TTL_S} seconds`);
    if (!isObject(body)) throw fail("bad_format", "the body must be an object");
    if (ENVELOPE_CLAIMS.some((c) => c in body) || "ses" in body) throw fail("bad_format", "body must not set envelope claims or ses");
    checkBody(typ, body);
    const iat = nowSeconds(now);
    const claims = { iss: this.localId, aud: this.remoteId, iat, exp: iat + ttl, jti: jti === undefined ? newJti() : checkJti(jti), typ, ...body };
    const token = await new CompactEncrypt(utf8(jsonText(claims)))
      .setProtectedHeader({ alg: SESSION_ALG, enc: SESSION_ENC, kid: this.sid, cty: SESSION_CTY })
      .encrypt(this._send);
    if (token.length > MAX_MESSAGE_BYTES) throw fail("too_large", `session frame exceeds ${MAX_MESSAGE_BYTES} bytes`, 413);
    return token;
  }

  /**
   * Decrypt and check a session frame from the other end (docs/protocol.md §8.3, in order):
   * {sender: {id}, claims, session: sid}, or LibError with the gateway's code.
   */
  async open(token, { replay = null, now, leeway = LEEWAY_S } = {}) {
    if (typeof token !== "string") throw fail("bad_format", "message must be text");
    if (token.length > MAX_MESSAGE_BYTES) throw fail("too_large", `message exceeds ${MAX_MESSAGE_BYTES} bytes`, 413);
    if (!/^[\x00-\x7f]*$/.test(token)) throw fail("bad_format", "message is not ASCII");
    const parts = token.split(".");
    if (parts.length !== 5) throw fail("bad_format", "not a compact JWE (5 segments)");
    const h = peekHeader(token, "session header");
    if (h.alg !== SESSION_ALG || h.enc !== SESSION_ENC) throw fail("bad_alg", `session alg/enc must be ${SESSION_ALG}/${SESSION_ENC}`);
    if (Object.keys(h).sort().join() !== [...HEADER_MEMBERS].sort().join()) throw fail("bad_format", `session header members must be ${HEADER_MEMBERS.join(", ")}`);
    if (h.cty !== SESSION_CTY) throw fail("bad_format", `session cty must be ${SESSION_CTY}`);
    if (h.kid !== this.sid) throw fail("unknown_session", "no session with this id on this connection");
    if (monotonic() >= this.acceptUntil) throw fail("session_expired", "the session key has expired; offer a new one");
    if (parts[1]) throw fail("bad_format", "a dir JWE has an empty encrypted key");
    if (b64uDecode(parts[2], "iv").length !== 12) throw fail("bad_format", "iv must be 96 bits");
    if (b64uDecode(parts[4], "tag").length !== 16) throw fail("bad_format", "tag must be 128 bits");
    b64uDecode(parts[3], "ciphertext");
    let plaintext;
    try {
      ({ plaintext } = await compactDecrypt(token, this._recv, { keyManagementAlgorithms: [SESSION_ALG], contentEncryptionAlgorithms: [SESSION_ENC] }));
    } catch {
      throw fail("decrypt_failed", "cannot decrypt (wrong key or tampered)");
    }
    let text;
    try {
      text = fromUtf8(plaintext);
    } catch {
      throw fail("bad_format", "claims are not UTF-8");
    }
    const claims = parseJsonObject(text, "claims");
    const at = now ?? Date.now() / 1000;
    checkClaims(claims, { id: this.remoteId }, { id: this.localId }, at, leeway);
    if ("ses" in claims) throw fail("bad_format", "a session offer must come in a sealed request");
    if (claims.typ === "request" && !DLG_OPS.includes(claims.op)) throw fail("needs_signature", `op ${claims.op} needs a sealed message`);
    if (replay) replay.checkAndAdd(this.remoteId, claims.jti, claims.exp, at);
    return { sender: { id: this.remoteId }, claims, session: this.sid };
  }
}
