// Small shared helpers of the core library: the error type, base64url, strict JSON.
// No cryptography here (that is WebCrypto's and jose's only).

import { base64url } from "jose";

/** Every refusal of the library: a stable `code`, a `reason` for people, an HTTP-like `status`. */
export class LibError extends Error {
  constructor(code, reason, status = 400) {
    super(reason ? `${reason} (${code})` : code);
    this.name = "LibError";
    this.code = code;
    this.reason = reason || code;
    this.status = status;
  }

  toJSON() {
    return { code: this.code, reason: this.reason, status: this.status };
  }
}

export const fail = (code, reason, status) => new LibError(code, reason, status);

export const subtle = () => {
  const c = globalThis.crypto;
  if (!c || !c.subtle) {
    throw fail("no_webcrypto", "WebCrypto is not available: open the app over https or from the gateway itself");
  }
  return c.subtle;
};

export const utf8 = (text) => new TextEncoder().encode(text);
export const fromUtf8 = (bytes) => new TextDecoder("utf-8", { fatal: true }).decode(bytes);

export const b64uEncode = (bytes) => base64url.encode(bytes);

/** Decode canonical, unpadded base64url (RFC 4648 §5) as the Python side does; else throw CODE. */
export function b64uDecode(segment, what, code = "bad_format") {
  if (typeof segment !== "string" || !/^[A-Za-z0-9_-]*$/.test(segment) || segment.length % 4 === 1) {
    throw fail(code, `${what} is not base64url`);
  }
  let bytes;
  try {
    bytes = base64url.decode(segment);
  } catch {
    throw fail(code, `${what} is not base64url`);
  }
  if (base64url.encode(bytes) !== segment) throw fail(code, `${what} is not canonical base64url`);
  return bytes;
}

export const randomB64u = (n) => b64uEncode(globalThis.crypto.getRandomValues(new Uint8Array(n)));

export const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

export const isInt = (v) => typeof v === "number" && Number.isSafeInteger(v);

/**
 * JSON text of VALUE; refuses what JSON cannot carry faithfully (NaN, Infinity, undefined
 * inside arrays, functions, BigInt) instead of silently turning it into null or dropping it.
 */
export function jsonText(value, code = "bad_format") {
  const check = (v) => {
    if (typeof v === "number" && !Number.isFinite(v)) throw fail(code, "a number is not finite");
    if (typeof v === "function" || typeof v === "symbol" || typeof v === "bigint") {
      throw fail(code, `a ${typeof v} cannot be sent as JSON`);
    }
    if (Array.isArray(v) && v.some((x) => x === undefined)) throw fail(code, "an array holds undefined");
    if (isObject(v)) for (const x of Object.values(v)) if (x !== undefined) check(x);
    if (Array.isArray(v)) v.forEach(check);
  };
  check(value);
  return JSON.stringify(value);
}

/** True if valid JSON TEXT has an object with a repeated member name (JSON.parse keeps the last). */
function hasDuplicateMembers(text) {
  const stack = []; // a Set of member names per open object, null per open array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top instanceof Set) {
        const name = JSON.parse(text.slice(i, j + 1));
        if (top.has(name)) return true;
        top.add(name);
        expectKey = false;
      }
      i = j;
    } else if (c === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      stack.push(null);
    } else if (c === "}" || c === "]") {
      stack.pop();
    } else if (c === ",") {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return false;
}

/**
 * Parse untrusted JSON TEXT that must be an object, as the gateway's bounded policy does
 * (gateway/jsonsafe.py): duplicate member names and numbers that are not finite are refused.
 */
export function parseJsonObject(text, what, code = "bad_format") {
  let value;
  try {
    value = JSON.parse(text, (_k, v) => {
      if (typeof v === "number" && !Number.isFinite(v)) throw new Error("not finite");
      return v;
    });
  } catch {
    throw fail(code, `${what} is not valid JSON`);
  }
  if (!isObject(value)) throw fail(code, `${what} is not a JSON object`);
  if (hasDuplicateMembers(text)) throw fail(code, `${what} has a repeated member name`);
  return value;
}

/** The protected header of a compact JWS/JWE, unverified (canonical base64url JSON object). */
export function peekHeader(token, what, code = "bad_format") {
  const seg = token.slice(0, token.indexOf("."));
  let text;
  try {
    text = fromUtf8(b64uDecode(seg, what, code));
  } catch (err) {
    throw err instanceof LibError ? err : fail(code, `${what} is not UTF-8`);
  }
  return parseJsonObject(text, what, code);
}

export const nowSeconds = (now) => Math.floor(now ?? Date.now() / 1000);
