// Bearer tokens for the HTTP binding, exactly as gateway/auth/tokens.py issues them
// (docs/tokens.md §1): a compact JWS, ES256, signed by this device's key.
//
//   header {"alg":"ES256","typ":"JWT","kid":ID}
//   claims {"iss":ID,"sub":ID,"aud":GATEWAY_ID,"iat":T,"nbf":T,"exp":T+ttl,"jti":22 chars}
//
// ID is the key's RFC 7638 thumbprint; the gateway finds the key by `iss` (the owner, or a
// granted and non-revoked subject of the ACL). A key the ACL does not know, presenting a
// delegation chain (docs/acl.md §6.5), puts its public key in the header: EMBEDKEY adds
// "jwk":PUBLIC_JWK (the gateway takes it only with a Streembit-Delegation header). Lifetime 1..86400 s (the gateway's maximum).

import { publicJwk, signCompact } from "./keys.js";
import { fail, isInt, nowSeconds, randomB64u, utf8 } from "./util.js";

export const DEFAULT_TTL_S = 300;
export const MAX_TTL_S = 86_400;
export const JTI_BYTES = 16;

/** A bearer token for GATEWAYID signed by KEY, valid TTL seconds from NOW (unix seconds). */
export async function makeToken(key, { gatewayId, ttl = DEFAULT_TTL_S, now, embedKey = false } = {}) {
  if (typeof gatewayId !== "string" || !gatewayId) throw fail("bad_request", "the gateway id is needed");
  if (!isInt(ttl) || ttl < 1 || ttl > MAX_TTL_S) throw fail("bad_request", `ttl must be 1..${MAX_TTL_S} seconds`);
  const iat = nowSeconds(now);
  const header = { alg: "ES256", typ: "JWT", kid: key.id };
  if (embedKey) header.jwk = publicJwk(key);
  const claims = {
    iss: key.id,
    sub: key.id,
    aud: gatewayId,
    iat,
    nbf: iat,
    exp: iat + ttl,
    jti: randomB64u(JTI_BYTES),
  };
  return signCompact(key, header, utf8(JSON.stringify(claims)));
}

/**
 * Reuse one short-lived token for many requests: a new one is signed when less than MARGIN
 * seconds of the current one are left (each token is a bearer credential: keep TTL short).
 */
export function tokenSource(key, gatewayId, { ttl = 60, margin = 15, clock = () => Date.now() / 1000, embedKey = false } = {}) {
  let token = null;
  let exp = 0;
  return {
    async get() {
      const now = clock();
      if (!token || now > exp - margin) {
        token = await makeToken(key, { gatewayId, ttl, now, embedKey });
        exp = Math.floor(now) + ttl;
      }
      return token;
    },
    /** The token's expiry (unix seconds), after get(). */
    get exp() { return exp; },
    reset() { token = null; },
  };
}
