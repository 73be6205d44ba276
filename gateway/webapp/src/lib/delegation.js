// Offline delegation links (docs/acl.md §6), made and read in the browser exactly as
// gateway/acl/delegation.py `sign_link` / `parse_link` do:
//
//   compact JWS (ES256), header {"alg":"ES256","typ":"streembit-dlg+jws","jwk":ISSUER_JWK},
//   payload (sorted keys, no whitespace, non-ASCII escaped, as Python's json.dumps):
//   {"iss","sub","aud","iat","exp","jti","prev","things","affordances","ops","depth",
//    "nbf"?, "schedule"?, "uses"?}
//
// `prev` of a first link is base64url(SHA-256("streembit-dlg-root:" + GATEWAY_ID + ":" + ISS)),
// of a later link base64url(SHA-256(the parent link's text)). A link may only narrow its
// parent (the issuer's own grant, or the last link of a chain it holds): `signLink` refuses,
// in words, before signing anything that would widen it. The gateway checks it all again
// (`verify_chain`), against its CURRENT ACL; the app's checks are for the user.

import { compactVerify } from "jose";
import { keyId, publicJwk, signCompact } from "./keys.js";
import { BASE_OPS, WILDCARD, checkSchedule, scheduleWindows } from "./acl.js";
import { b64uDecode, b64uEncode, fail, fromUtf8, isInt, isObject, nowSeconds, parseJsonObject, peekHeader, randomB64u, subtle, utf8 } from "./util.js";

export const DLG_TYP = "streembit-dlg+jws";
export const DLG_ALG = "ES256";
export const HTTP_HEADER = "Streembit-Delegation";
export const SEPARATOR = "~"; // between links in the HTTP header (not in a compact JWS)
export const MAX_LINKS = 4;
export const MAX_LINK_BYTES = 4096;
export const MAX_LIFETIME_S = 30 * 86400;
export const MAX_USES = 1_000_000;
export const MAX_LIST = 64;
export const ROOT_PREFIX = "streembit-dlg-root:";
const MAX_NAME_LEN = 128;
const MAX_INT = Number.MAX_SAFE_INTEGER;
const REQUIRED = ["iss", "sub", "aud", "iat", "exp", "jti", "prev", "things", "ops", "depth"];
const CLAIMS = [...REQUIRED, "affordances", "nbf", "schedule", "uses"];
const ID = /^[A-Za-z0-9_-]{43}$/;

const malformed = (reason) => fail("delegation_malformed", reason);

/** base64url(SHA-256(TEXT)): the `prev` of a child link (gateway: delegation.digest). */
export async function digest(text) {
  return b64uEncode(new Uint8Array(await subtle().digest("SHA-256", utf8(text))));
}

/** The `prev` of a first link: the reference of ISSUERID's grant on GATEWAYID. */
export const rootRef = (gatewayId, issuerId) => digest(`${ROOT_PREFIX}${gatewayId}:${issuerId}`);

/** JSON as Python's json.dumps(sort_keys=True, separators=(",", ":")) writes it. */
function pyJson(value) {
  const sorted = (v) => {
    if (Array.isArray(v)) return v.map(sorted);
    if (!isObject(v)) return v;
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]));
  };
  return JSON.stringify(sorted(value)).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

// ---------------------------------------------------------------------------- parsing
function names(v, label) {
  if (!Array.isArray(v) || !v.length || v.length > MAX_LIST) throw malformed(`${label} must be a list of 1..${MAX_LIST} names`);
  for (const n of v) {
    if (typeof n !== "string" || !n || n.length > MAX_NAME_LEN) throw malformed(`${label}: names are 1..${MAX_NAME_LEN} characters`);
  }
  return [...v];
}

const intOk = (v) => isInt(v) && v >= 0 && v <= MAX_INT;

/**
 * One link's structure, as gateway/acl/delegation.py `parse_link` checks it (no signature or
 * chain check): {text, jwk, iss, sub, aud, iat, exp, jti, prev, things, affordances, ops,
 * depth, nbf, schedule, uses}; LibError delegation_malformed otherwise.
 */
export function parseLink(text) {
  if (typeof text !== "string" || !/^[\x00-\x7f]*$/.test(text) || text.length > MAX_LINK_BYTES) {
    throw malformed(`a link is ASCII text of at most ${MAX_LINK_BYTES} bytes`);
  }
  const parts = text.split(".");
  if (parts.length !== 3) throw malformed("a link is a compact JWS");
  const header = peekHeader(text, "the link header", "delegation_malformed");
  const claims = parseJsonObject(fromUtf8(b64uDecode(parts[1], "the link payload", "delegation_malformed")), "the link payload", "delegation_malformed");
  b64uDecode(parts[2], "the link signature", "delegation_malformed");
  const hk = Object.keys(header).sort().join(",");
  if (hk !== "alg,jwk,typ" || header.alg !== DLG_ALG || header.typ !== DLG_TYP) throw malformed(`header must be alg ${DLG_ALG}, typ ${DLG_TYP}, jwk`);
  if (!isObject(header.jwk)) throw malformed("header jwk must be an object");
  if (REQUIRED.some((n) => !(n in claims)) || Object.keys(claims).some((n) => !CLAIMS.includes(n))) {
    throw malformed("payload members missing or unknown");
  }
  for (const n of ["iss", "sub", "aud", "jti", "prev"]) {
    if (typeof claims[n] !== "string" || !claims[n] || claims[n].length > MAX_NAME_LEN) throw malformed(`${n} must be a short string`);
  }
  for (const n of ["iat", "exp", "depth", "nbf", "uses"]) {
    if (n in claims && !intOk(claims[n])) throw malformed(`${n} must be a non-negative integer`);
  }
  const ops = names(claims.ops, "ops");
  if (!ops.every((op) => BASE_OPS.includes(op))) throw malformed(`ops must be a subset of ${BASE_OPS.join(", ")}`);
  const { iat, exp } = claims;
  const nbf = claims.nbf ?? null;
  const uses = claims.uses ?? null;
  if (uses !== null && (uses < 1 || uses > MAX_USES)) throw malformed(`uses must be 1..${MAX_USES}`);
  if (!(iat < exp && exp <= iat + MAX_LIFETIME_S)) throw malformed(`exp after iat by at most ${MAX_LIFETIME_S} s`);
  if (nbf !== null && nbf >= exp) throw malformed("exp must be after nbf");
  let schedule = null;
  if (claims.schedule !== undefined) {
    try {
      schedule = checkSchedule(claims.schedule);
    } catch {
      throw malformed("schedule is malformed");
    }
  }
  return {
    text, jwk: header.jwk, iss: claims.iss, sub: claims.sub, aud: claims.aud, iat, exp, jti: claims.jti,
    prev: claims.prev, things: names(claims.things, "things"), affordances: names(claims.affordances ?? [WILDCARD], "affordances"),
    ops: [...new Set(ops)].sort(), depth: claims.depth, nbf, schedule, uses,
  };
}

/**
 * The links of a chain as it is passed on: a list, or text with the links separated by "~"
 * (the HTTP header), newlines (a `streembit-peer delegate` chain file) or spaces.
 */
export function splitChain(chain) {
  const list = Array.isArray(chain) ? chain.map((x) => String(x).trim()) : String(chain ?? "").split(/[~\s]+/);
  const links = list.filter(Boolean);
  if (!links.length || links.length > MAX_LINKS) throw malformed(`a chain is 1..${MAX_LINKS} links`);
  return links;
}

// ---------------------------------------------------------------------------- narrowing
/** What a grant (GET /acl/mine `grant`) allows a first link: an admin grant counts as "*". */
export function grantBound(grant) {
  if (!isObject(grant)) throw fail("delegation_not_allowed", "this key holds no grant to pass on");
  const admin = grant.role === "admin";
  return {
    things: admin ? [WILDCARD] : [...grant.things],
    affordances: admin ? [WILDCARD] : [...(grant.affordances || [WILDCARD])],
    ops: admin ? [...BASE_OPS] : [...grant.ops],
    nbf: grant.nbf ?? null,
    exp: grant.exp ?? null,
    schedule: grant.schedule ?? null,
    uses: null,
    depth: grant.delegate ?? 0,
  };
}

/** What a link allows the next one. */
export const linkBound = (link) => ({
  things: link.things, affordances: link.affordances, ops: link.ops, nbf: link.nbf, exp: link.exp,
  schedule: link.schedule, uses: link.uses, depth: link.depth,
});

const inside = (child, parent) => (parent.includes(WILDCARD) ? [] : child.filter((n) => n === WILDCARD || !parent.includes(n)));

/** Every window of CHILD inside one window of PARENT on the same day (null: any time). */
export function scheduleInside(child, parent) {
  if (parent === null || parent === undefined) return true;
  if (child === null || child === undefined) return false;
  const p = scheduleWindows(parent);
  return scheduleWindows(child).every((windows, day) => windows.every(([s, e]) => p[day].some(([ps, pe]) => ps <= s && e <= pe)));
}

const day = (ts) => new Date(ts * 1000).toISOString().replace(".000Z", "Z");

/** The reasons (in words) why LINK-like {things, affordances, ops, iat, nbf, exp, schedule, uses} widens BOUND; [] if it does not. */
export function wideningReasons(link, bound) {
  const out = [];
  const things = inside(link.things, bound.things);
  if (things.length) out.push(`Things outside what you may pass on: ${things.join(", ")}`);
  const affs = inside(link.affordances || [WILDCARD], bound.affordances);
  if (affs.length) out.push(`properties or actions outside yours: ${affs.join(", ")}`);
  const ops = link.ops.filter((op) => !bound.ops.includes(op));
  if (ops.length) out.push(`operations outside yours: ${ops.join(", ")}`);
  const lo = link.nbf ?? link.iat;
  if (bound.nbf !== null && lo < bound.nbf) out.push(`it starts before your own access does (${day(bound.nbf)})`);
  if (bound.exp !== null && link.exp > bound.exp) out.push(`it ends after your own access does (${day(bound.exp)})`);
  if (!scheduleInside(link.schedule ?? null, bound.schedule)) {
    out.push(`its schedule is not inside yours (${bound.schedule})`);
  }
  if (bound.uses !== null && !(link.uses !== null && link.uses !== undefined && link.uses <= bound.uses)) {
    out.push(`it needs a use count of at most ${bound.uses}`);
  }
  return out;
}

// ---------------------------------------------------------------------------- signing
/**
 * A link from KEY (this device's key handle) to the key id TO on GATEWAYID, checked against
 * BOUND (grantBound / linkBound of what the issuer holds) before it is signed. PARENT: the
 * previous link's text (null: a first link). Refusals: LibError delegation_widens /
 * delegation_too_deep / delegation_malformed, with the reason in words.
 */
export async function signLink(key, {
  to, gatewayId, things, ops, exp, affordances = [WILDCARD], depth = 0, nbf = null, schedule = null,
  uses = null, parent = null, jti = null, now, bound = null,
}) {
  const iat = nowSeconds(now);
  if (typeof to !== "string" || !ID.test(to)) throw malformed("the delegatee is a key id (43 characters)");
  if (to === key.id) throw fail("delegation_loop", "a link to your own key passes nothing on");
  if (typeof gatewayId !== "string" || !gatewayId) throw malformed("the gateway id is needed");
  names(things, "things");
  names(affordances, "affordances");
  names(ops, "ops");
  if (!ops.every((op) => BASE_OPS.includes(op))) throw malformed(`ops must be a subset of ${BASE_OPS.join(", ")}`);
  if (!intOk(exp) || exp <= iat) throw malformed("the end must be in the future");
  if (exp > iat + MAX_LIFETIME_S) throw malformed("a link lasts at most 30 days");
  if (nbf !== null && (!intOk(nbf) || nbf >= exp)) throw malformed("the start must be before the end");
  if (uses !== null && (!isInt(uses) || uses < 1 || uses > MAX_USES)) throw malformed(`the use count is 1..${MAX_USES}`);
  if (!intOk(depth)) throw malformed("the depth is a non-negative integer");
  if (schedule !== null) checkSchedule(schedule);
  if (bound) {
    if (bound.depth < 1) throw fail("delegation_not_allowed", "what you hold may not be passed on", 403);
    if (depth >= bound.depth) {
      throw fail("delegation_too_deep", `the delegatee may pass it on at most ${bound.depth - 1} more time(s)`, 403);
    }
    const sortedOps = [...new Set(ops)].sort();
    const reasons = wideningReasons({ things, affordances, ops: sortedOps, iat, nbf, exp, schedule, uses }, bound);
    if (reasons.length) throw fail("delegation_widens", `a link can only narrow what you hold: ${reasons.join("; ")}`, 403);
  }
  const payload = {
    iss: key.id, sub: to, aud: gatewayId, iat, exp,
    jti: jti || randomB64u(16),
    prev: parent === null ? await rootRef(gatewayId, key.id) : await digest(parent),
    things: [...things], affordances: [...affordances], ops: [...new Set(ops)].sort(), depth,
  };
  if (nbf !== null) payload.nbf = nbf;
  if (schedule !== null) payload.schedule = schedule;
  if (uses !== null) payload.uses = uses;
  const header = { alg: DLG_ALG, typ: DLG_TYP, jwk: publicJwk(key) };
  const text = await signCompact(key, header, utf8(pyJson(payload)));
  parseLink(text); // what the gateway would refuse is never handed out
  return text;
}

// ---------------------------------------------------------------------------- chains
async function signedBy(link, issuerId) {
  let jwk;
  try {
    jwk = publicJwk(link.jwk);
  } catch {
    return false;
  }
  if ((await keyId(jwk)) !== issuerId || link.iss !== issuerId) return false;
  try {
    const k = await subtle().importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    await compactVerify(link.text, k, { algorithms: [DLG_ALG] });
    return true;
  } catch {
    return false;
  }
}

/**
 * Check a chain as far as the app can without the ACL (the first issuer's grant is the
 * gateway's to check): structure, each link signed by its issuer, each issuer the previous
 * link's delegatee, `prev` references, one gateway (GATEWAYID when given), no key twice,
 * depth and narrowing from link to link, and the last link is for HOLDER (when given).
 * Returns the parsed links; LibError delegation_* otherwise.
 */
export async function readChain(chain, { gatewayId = null, holder = null } = {}) {
  const links = splitChain(chain).map(parseLink);
  const aud = gatewayId || links[0].aud;
  const seen = new Set([links[0].iss]);
  const jtis = new Set();
  let prev = await rootRef(aud, links[0].iss);
  let issuer = links[0].iss;
  let parent = null;
  for (const link of links) {
    if (!(await signedBy(link, issuer))) throw fail("delegation_bad_signature", "a link is not signed by its issuer", 403);
    if (link.aud !== aud) throw malformed(gatewayId ? "this chain is for another gateway" : "the links are for different gateways");
    if (link.prev !== prev) throw malformed("a link does not follow its parent");
    if (seen.has(link.sub) || jtis.has(link.jti)) throw fail("delegation_loop", "a chain delegates back to a key it passed", 403);
    seen.add(link.sub);
    jtis.add(link.jti);
    if (parent) {
      if (parent.depth === 0 || link.depth >= parent.depth) throw fail("delegation_too_deep", "the chain is past its depth limit", 403);
      const reasons = wideningReasons(link, parent);
      if (reasons.length) throw fail("delegation_widens", `a link widens its parent: ${reasons.join("; ")}`, 403);
    }
    parent = linkBound(link);
    prev = await digest(link.text);
    issuer = link.sub;
  }
  if (holder && links[links.length - 1].sub !== holder) {
    throw fail("delegation_wrong_holder", "this chain was passed on to another key, not to this one", 403);
  }
  return links;
}

/**
 * What a chain lets its holder see on the Things screen, in the shape of GET /acl/mine:
 * {subject, role: "delegated", grant: null, chain: {...}, things: {THING: {type, title,
 * properties, actions, events}}} from the Things' TDs, the last link's names and operations.
 */
export function chainRights(links, tds, holder) {
  const last = links[links.length - 1];
  const okName = (list, n) => list.includes(WILDCARD) || list.includes(n);
  const allowed = (offered) => offered.filter((op) => last.ops.includes(op));
  const things = {};
  for (const td of tds || []) {
    const m = /\/things\/([^/]+)\/?$/.exec(td.base || "");
    const name = m ? decodeURIComponent(m[1]) : td.title;
    if (!okName(last.things, name)) continue;
    const pick = (kind, offer) => {
      const out = {};
      for (const [n, spec] of Object.entries(td[kind] || {})) {
        if (!okName(last.affordances, n)) continue;
        const ops = allowed(offer(spec));
        if (ops.length) out[n] = ops;
      }
      return out;
    };
    const properties = pick("properties", (p) => ["readproperty", ...(p.readOnly ? [] : ["writeproperty"]), ...(p.observable ? ["observeproperty"] : [])]);
    const actions = pick("actions", () => ["invokeaction"]);
    const events = pick("events", () => ["subscribeevent"]);
    const type = td.actions && td.actions.lock && td.actions.unlock ? "lock" : "thing";
    if (Object.keys(properties).length || Object.keys(actions).length || Object.keys(events).length) {
      things[name] = { type, title: td.title, properties, actions, events };
    }
  }
  return { subject: holder, role: "delegated", grant: null, chain: summary(links), things };
}

/** A chain in words-ready form: {from, things, affordances, ops, nbf, exp, schedule, uses, depth, links}. */
export function summary(links) {
  const last = links[links.length - 1];
  const nbf = Math.max(...links.map((l) => l.nbf ?? l.iat));
  const schedules = links.map((l) => l.schedule).filter(Boolean);
  const uses = links.map((l) => l.uses).filter((u) => u !== null);
  return {
    from: links.map((l) => l.iss), holder: last.sub, gateway: last.aud, things: last.things, affordances: last.affordances,
    ops: last.ops, nbf, exp: Math.min(...links.map((l) => l.exp)), schedules, uses: uses.length ? Math.min(...uses) : null,
    depth: last.depth, links: links.length, jti: last.jti,
  };
}
