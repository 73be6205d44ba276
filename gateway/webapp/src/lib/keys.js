// This device's identity: one P-256 key, as in the gateway (gateway/identity/keys.py).
//
// The private key is held by WebCrypto as two NON-extractable CryptoKeys made from the same
// private scalar: an ECDSA key (ES256: tokens, ACLs, sealed messages) and an ECDH key (opening
// messages sealed to us, ECDH-ES). WebCrypto fixes one algorithm per CryptoKey, hence two.
// Script can use them but never read them. The private key exists in readable form only for a
// moment while a key is created or imported; it is then either dropped or kept ENCRYPTED as a
// passphrase backup (only when the user gave a passphrase). See docs/webapp-lib.md.
//
// Stored record (store key "identity"):
//   {v: 1, id, publicJwk: {kty, crv, x, y}, signKey: CryptoKey, ecdhKey: CryptoKey,
//    backup: string | null (the compact JWE below), created: unix seconds}
//
// Backup format (RFC 7517 §7 "encrypted JWK", readable by any JOSE library, joserfc included):
//   compact JWE, protected header {"alg": "PBES2-HS512+A256KW", "enc": "A256GCM",
//   "cty": "jwk+json", "kid": ID, "p2s": 16 random bytes, "p2c": 600000};
//   plaintext: the private JWK {"kty":"EC","crv":"P-256","x":…,"y":…,"d":…} as JSON.

import { CompactEncrypt, CompactSign, calculateJwkThumbprint, compactDecrypt, errors } from "jose";
import { fail, fromUtf8, isObject, nowSeconds, parseJsonObject, subtle, utf8 } from "./util.js";

export const RECORD = "identity";
export const BACKUP_ALG = "PBES2-HS512+A256KW";
export const BACKUP_ENC = "A256GCM";
export const BACKUP_CTY = "jwk+json";
export const BACKUP_P2C = 600_000; // PBKDF2-HMAC-SHA512 iterations (OWASP 2023: >= 210 000)
export const BACKUP_MAX_P2C = 5_000_000; // refuse absurd counts (a denial of service on import)
export const MIN_PASSPHRASE = 8;

const ECDSA = { name: "ECDSA", namedCurve: "P-256" };
const ECDH = { name: "ECDH", namedCurve: "P-256" };
const MAX_PEM = 16 * 1024; // as gateway/identity/keys.py MAX_KEY_FILE

/** The public JWK of a JWK or a key handle: exactly {kty, crv, x, y}; refuses anything else. */
export function publicJwk(jwkOrKey) {
  const jwk = jwkOrKey && jwkOrKey.publicJwk ? jwkOrKey.publicJwk : jwkOrKey;
  if (!isObject(jwk) || jwk.kty !== "EC" || jwk.crv !== "P-256") {
    throw fail("bad_key", "the key must be an EC P-256 JWK");
  }
  if (typeof jwk.x !== "string" || typeof jwk.y !== "string") throw fail("bad_key", "the JWK lacks x/y");
  return { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y };
}

/** RFC 7638 thumbprint (SHA-256, base64url): the id the gateway uses (identity.thumbprint). */
export async function keyId(jwkOrKey) {
  return calculateJwkThumbprint(publicJwk(jwkOrKey), "sha256");
}

/** The CryptoKey jose signs ES256 with (ECDSA P-256, non-extractable). */
export function signingKey(key) {
  if (!key || !key.signKey) throw fail("no_key", "no private key: create or import a key first");
  return key.signKey;
}

/** A compact JWS of PAYLOAD (bytes) with protected HEADER, ES256-signed by KEY (jose). */
export async function signCompact(key, header, payload) {
  return new CompactSign(payload).setProtectedHeader(header).sign(signingKey(key));
}

function checkPassphrase(passphrase) {
  if (typeof passphrase !== "string" || [...passphrase].length < MIN_PASSPHRASE) {
    throw fail("weak_passphrase", `the backup passphrase must have at least ${MIN_PASSPHRASE} characters`);
  }
}

async function encryptBackup(privateJwk, id, passphrase) {
  checkPassphrase(passphrase);
  const plain = utf8(JSON.stringify({ kty: "EC", crv: "P-256", x: privateJwk.x, y: privateJwk.y, d: privateJwk.d }));
  try {
    return await new CompactEncrypt(plain)
      .setProtectedHeader({ alg: BACKUP_ALG, enc: BACKUP_ENC, cty: BACKUP_CTY, kid: id })
      .setKeyManagementParameters({ p2c: BACKUP_P2C })
      .encrypt(utf8(passphrase.normalize("NFC")));
  } finally {
    plain.fill(0);
  }
}

/** Decrypt a backup: the private JWK, or LibError bad_backup / bad_passphrase. */
async function decryptBackup(text, passphrase) {
  if (typeof text !== "string" || text.trim().split(".").length !== 5) {
    throw fail("bad_backup", "this is not a key backup (a compact JWE)");
  }
  if (typeof passphrase !== "string" || !passphrase) throw fail("bad_passphrase", "the passphrase is empty");
  let out;
  try {
    out = await compactDecrypt(text.trim(), utf8(passphrase.normalize("NFC")), {
      keyManagementAlgorithms: [BACKUP_ALG],
      contentEncryptionAlgorithms: [BACKUP_ENC],
      maxPBES2Count: BACKUP_MAX_P2C,
    });
  } catch (err) {
    if (err instanceof errors.JWEDecryptionFailed) {
      throw fail("bad_passphrase", "wrong passphrase (or a damaged backup)", 403);
    }
    throw fail("bad_backup", `not a key backup of this app: ${err.message}`);
  }
  const h = out.protectedHeader;
  if (h.cty !== BACKUP_CTY || !(h.p2c >= BACKUP_P2C)) {
    throw fail("bad_backup", `a key backup has cty ${BACKUP_CTY} and p2c >= ${BACKUP_P2C}`);
  }
  let jwk;
  try {
    jwk = parseJsonObject(fromUtf8(out.plaintext), "the backup", "bad_backup");
  } finally {
    out.plaintext.fill(0);
  }
  if (typeof jwk.d !== "string") throw fail("bad_backup", "the backup holds no private key");
  return { jwk, kid: h.kid };
}

/**
 * Make the usable, NON-extractable key handle from a private JWK (the only time its secret
 * is readable), check it really is one key pair, optionally encrypt a backup, and store it.
 */
async function materialize(store, privateJwk, { backup = null, passphrase = null, replace = false } = {}) {
  const pub = publicJwk(privateJwk);
  const id = await keyId(pub);
  if (!replace && store && (await store.get(RECORD))) {
    throw fail("key_exists", "this device already has a key: export its backup, then replace it explicitly", 409);
  }
  const jwk = { ...pub, d: privateJwk.d };
  let signKey;
  let ecdhKey;
  try {
    signKey = await subtle().importKey("jwk", jwk, ECDSA, false, ["sign"]);
    ecdhKey = await subtle().importKey("jwk", jwk, ECDH, false, ["deriveBits"]);
  } catch {
    throw fail("bad_key", "not a valid P-256 private key");
  }
  // Self-test: the private scalar belongs to the public point whose thumbprint is the id.
  const probe = utf8(`streembit key check ${id}`);
  const verifyKey = await subtle().importKey("jwk", pub, ECDSA, false, ["verify"]);
  const sig = await subtle().sign({ name: "ECDSA", hash: "SHA-256" }, signKey, probe);
  if (!(await subtle().verify({ name: "ECDSA", hash: "SHA-256" }, verifyKey, sig, probe))) {
    throw fail("bad_key", "the private key does not match its public key");
  }
  const wrapped = backup || (passphrase ? await encryptBackup(jwk, id, passphrase) : null);
  const record = { v: 1, id, publicJwk: pub, signKey, ecdhKey, backup: wrapped, created: nowSeconds() };
  if (store) await store.put(RECORD, record);
  return record;
}

/**
 * Generate this device's key. With a PASSPHRASE an encrypted backup is kept (exportBackup);
 * without one the key can never leave the device. Refuses to replace a key unless REPLACE.
 */
export async function createKey(store, { passphrase = null, replace = false } = {}) {
  if (passphrase !== null) checkPassphrase(passphrase);
  const pair = await subtle().generateKey(ECDSA, true, ["sign", "verify"]);
  const jwk = await subtle().exportKey("jwk", pair.privateKey);
  return materialize(store, jwk, { passphrase, replace }); // `pair` and `jwk` are dropped here
}

/** The stored key handle, or null. */
export async function loadKey(store) {
  const rec = await store.get(RECORD);
  if (!rec || rec.v !== 1 || !rec.signKey || !rec.ecdhKey) return null;
  return rec;
}

/** Delete this device's key (irreversible without a backup). */
export async function forgetKey(store) {
  await store.delete(RECORD);
}

/** {id, publicJwk, hasBackup}: what may be shown or shared. */
export function describeKey(key) {
  return { id: key.id, publicJwk: { ...key.publicJwk }, hasBackup: Boolean(key.backup) };
}

function pemBody(pem) {
  if (typeof pem !== "string" || pem.length > MAX_PEM) throw fail("bad_key", "not a key file");
  if (pem.includes("ENCRYPTED PRIVATE KEY")) {
    throw fail("bad_key", "this key file is protected by a passphrase; the app reads only an unencrypted key file (as `streembit-peer keygen` writes it)");
  }
  if (pem.includes("BEGIN PUBLIC KEY")) throw fail("bad_key", "this is a public key; give the private key file (without .pub)");
  if (pem.includes("BEGIN EC PRIVATE KEY")) throw fail("bad_key", "a SEC1 'EC PRIVATE KEY' file: convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)");
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(pem);
  if (!m) throw fail("bad_key", "not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)");
  let bin;
  try {
    bin = atob(m[1].replace(/\s+/g, ""));
  } catch {
    throw fail("bad_key", "the PEM body is not base64");
  }
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * Import a `streembit-peer` key file (PKCS#8 PEM, P-256, unencrypted): the same id as
 * `streembit-peer id`. With a PASSPHRASE an encrypted backup is kept, as in createKey.
 */
export async function importPkcs8Pem(store, pem, { passphrase = null, replace = false } = {}) {
  if (passphrase !== null) checkPassphrase(passphrase);
  const der = pemBody(pem);
  let jwk;
  try {
    const tmp = await subtle().importKey("pkcs8", der, ECDSA, true, ["sign"]);
    jwk = await subtle().exportKey("jwk", tmp);
  } catch {
    throw fail("bad_key", "not a P-256 private key");
  } finally {
    der.fill(0);
  }
  return materialize(store, jwk, { passphrase, replace });
}

/**
 * The key's encrypted backup (a string to save as a file), after checking that PASSPHRASE
 * opens it and that it is this key. The stored backup is already encrypted: nothing secret
 * is produced here. A key created without a passphrase has no backup (no_backup).
 */
export async function exportBackup(key, passphrase) {
  if (!key || !key.backup) {
    throw fail("no_backup", "this key was created without a backup passphrase, so it cannot leave this device", 409);
  }
  const { jwk } = await decryptBackup(key.backup, passphrase);
  if ((await keyId(jwk)) !== key.id) throw fail("bad_backup", "the stored backup is not of this key");
  return key.backup;
}

/** Restore a key from a backup made by exportBackup (or any JWE of the documented format). */
export async function importBackup(store, text, passphrase, { replace = false } = {}) {
  const { jwk, kid } = await decryptBackup(text, passphrase);
  if (kid !== undefined && kid !== (await keyId(jwk))) {
    throw fail("bad_backup", "the backup's kid is not the id of the key inside");
  }
  return materialize(store, jwk, { backup: text.trim(), replace });
}
