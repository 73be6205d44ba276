// The owner-signed ACL (docs/acl.md), built and signed in the browser exactly as
// gateway/acl/document.py `sign_acl` does:
//
//   compact JWS, header {"alg":"ES256","typ":"streembit-acl+jws","kid":OWNER_ID},
//   payload = the JSON of gateway/acl/model.py with sorted keys, no whitespace and non-ASCII
//   escaped (Python's json.dumps(sort_keys=True, separators=(",", ":"))), so a payload made
//   here is byte for byte the one `streembit-peer acl grant` would write.
//
// The current ACL comes from GET /acl (owner only; gateway/bindings/http/ownerview.py):
// {"version": N | null, "acl": PAYLOAD | null, "jws": TEXT | null}. `parseAcl` builds only on
// the JWS after checking the owner's signature on it, never on the unsigned `acl` copy, so
// whoever sits between the phone and the gateway cannot slip a grant into what the owner signs.

import { compactVerify } from "jose";
import { keyId, publicJwk, signCompact } from "./keys.js";
import { b64uDecode, fail, fromUtf8, isInt, isObject, nowSeconds, parseJsonObject, peekHeader, subtle, utf8 } from "./util.js";

export const ACL_TYP = "streembit-acl+jws";
export const MAX_ACL_BYTES = 256 * 1024;
export const BASE_OPS = ["invokeaction", "observeproperty", "readproperty", "subscribeevent", "writeproperty"];
export const ROLES = ["user", "admin"];
export const WILDCARD = "*";
const MAX_NAME_LEN = 128;
const MAX_LIST_LEN = 256;
const MAX_SCHEDULE_LEN = 512;
const GRANT_KEYS = ["sub", "jwk", "things", "affordances", "ops", "nbf", "exp", "schedule", "role", "delegate", "since"];
const ACL_KEYS = ["gateway", "version", "iat", "tz", "grants", "revoked", "revoked_delegations"];
export const MAX_DELEGATE = 4; // longest delegation chain a grant may allow (docs/acl.md §6)

/**
 * Grant presets the owner picks from. Both include observeproperty/subscribeevent so the app's
 * live view of the granted Things works; neither allows writing a property.
 */
export const PRESETS = Object.freeze({
  "can unlock": Object.freeze({ affordances: [WILDCARD], ops: ["invokeaction", "observeproperty", "readproperty", "subscribeevent"] }),
  "read only": Object.freeze({ affordances: [WILDCARD], ops: ["observeproperty", "readproperty", "subscribeevent"] }),
});

const bad = (reason) => fail("acl_malformed", reason);

// ------------------------------------------------------------------------------ schedule
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const TIME = /^([01]\d|2[0-4]):([0-5]\d)$/;

function minutes(text, spec) {
  const m = TIME.exec(text);
  if (!m || (m[1] === "24" && m[2] !== "00")) throw bad(`schedule ${spec}: ${text} is not a time HH:MM (00:00..24:00)`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/**
 * Parse a weekly schedule as gateway/acl/model.py `Schedule.parse` does: per weekday (Monday
 * = 0) the sorted [start, end) minute windows.
 */
export function scheduleWindows(spec) {
  if (typeof spec !== "string" || !spec.trim()) throw bad("schedule must be a non-empty string");
  if (spec.length > MAX_SCHEDULE_LEN) throw bad(`schedule longer than ${MAX_SCHEDULE_LEN} characters`);
  const perDay = DAYS.map(() => []);
  const entries = spec.toLowerCase().split(";").map((e) => e.trim());
  if (entries.length > 1 && !entries[entries.length - 1]) entries.pop();
  for (const entry of entries) {
    const m = /^(\S+)\s+(\S[\s\S]*)$/.exec(entry);
    if (!m) throw bad(`schedule ${spec}: entry "${entry}" is not "DAYS HH:MM-HH:MM"`);
    const days = [];
    if (m[1] === "daily") days.push(0, 1, 2, 3, 4, 5, 6);
    else {
      for (const part of m[1].split(",")) {
        const [first, last, more] = part.split("-");
        const a = DAYS.indexOf(first);
        const b = last === undefined ? a : DAYS.indexOf(last);
        if (a < 0 || b < 0 || more !== undefined) {
          throw bad(`schedule ${spec}: ${part} is not a day (mon..sun), a range (mon-fri) or daily`);
        }
        for (let d = a; ; d = (d + 1) % 7) { days.push(d); if (d === b) break; }
      }
    }
    for (const range of m[2].split(/\s*,\s*|\s+/)) {
      const [a, b, more] = range.split("-");
      if (b === undefined || more !== undefined) throw bad(`schedule ${spec}: ${range} is not a range HH:MM-HH:MM`);
      const start = minutes(a, spec);
      const end = minutes(b, spec);
      if (start >= end) {
        throw bad(`schedule ${spec}: ${range} ends before it starts; write overnight windows as two entries (fri 22:00-24:00; sat 00:00-06:00)`);
      }
      for (const d of days) perDay[d].push([start, end]);
    }
  }
  if (!perDay.some((w) => w.length)) throw bad(`schedule ${spec}: no time window`);
  return perDay.map((w) => w.sort((x, y) => x[0] - y[0] || x[1] - y[1]));
}

/** Check a weekly schedule as gateway/acl/model.py `Schedule.parse` does; returns SPEC. */
export function checkSchedule(spec) {
  scheduleWindows(spec);
  return spec;
}

// -------------------------------------------------------------------------- structure
function names(value, label) {
  if (!Array.isArray(value) || !value.length || value.length > MAX_LIST_LEN) throw bad(`grant ${label} must be a list of 1..${MAX_LIST_LEN} names`);
  for (const n of value) {
    if (typeof n !== "string" || !n || n.length > MAX_NAME_LEN) throw bad(`grant ${label}: names are 1..${MAX_NAME_LEN} characters`);
  }
  return [...value];
}

function unixTime(value, label) {
  if (!isInt(value) || value < 0) throw bad(`${label} must be unix seconds (an integer)`);
  return value;
}

/** A grant in the signer's form (members as gateway/acl/model.py `Grant.to_json` writes them). */
export function checkGrant(g) {
  if (!isObject(g)) throw bad("a grant must be an object");
  const extra = Object.keys(g).filter((k) => !GRANT_KEYS.includes(k) && g[k] !== undefined);
  if (extra.length) throw bad(`grant has unknown members ${extra.sort().join(", ")}`);
  if (typeof g.sub !== "string") throw bad("grant sub must be a string");
  if (isObject(g.jwk) && "d" in g.jwk) throw bad("a grant's jwk must be public (no d)");
  let jwk;
  try {
    jwk = publicJwk(g.jwk);
  } catch {
    throw bad(`grant ${g.sub.slice(0, 16)}: jwk must be an EC P-256 public key`);
  }
  const ops = Array.isArray(g.ops) ? [...new Set(g.ops)].sort() : null;
  if (!ops || !ops.length || !ops.every((op) => BASE_OPS.includes(op))) throw bad(`grant ops must be a non-empty subset of ${BASE_OPS.join(", ")}`);
  const role = g.role ?? "user";
  if (!ROLES.includes(role)) throw bad(`grant role must be one of ${ROLES.join(", ")}`);
  const out = {
    sub: g.sub,
    jwk,
    things: names(g.things, "things"),
    affordances: names(g.affordances ?? [WILDCARD], "affordances"),
    ops,
    role,
  };
  if (g.nbf != null) out.nbf = unixTime(g.nbf, "grant nbf");
  if (g.exp != null) out.exp = unixTime(g.exp, "grant exp");
  if (out.nbf !== undefined && out.exp !== undefined && out.exp <= out.nbf) throw bad("grant exp must be after nbf");
  if (g.schedule != null) out.schedule = checkSchedule(g.schedule);
  const delegate = g.delegate ?? 0;
  if (!isInt(delegate) || delegate < 0 || delegate > MAX_DELEGATE) throw bad(`grant delegate must be an integer 0..${MAX_DELEGATE}`);
  if (delegate) out.delegate = delegate; // not written when 0, as Grant.to_json
  if (g.since != null) {
    if (!delegate) throw bad("grant since must be unix seconds, on a grant that may delegate");
    out.since = unixTime(g.since, "grant since");
  }
  return out;
}

/**
 * G with its `since` (docs/acl.md §6.4), as gateway/acl/document.py `with_grant`: kept from
 * the grant it replaces while that one could delegate too, else NOW (a new grant, a re-grant
 * after a revocation, delegation switched on), so that old links are not revived.
 */
function withSince(g, old, now) {
  if (!g.delegate || g.since !== undefined) return g;
  if (old && old.delegate && old.since !== undefined) return { ...g, since: old.since };
  return { ...g, since: now };
}

/** A checked copy of an ACL payload (acl_malformed on any deviation from docs/acl.md §1.2). */
export function checkAcl(acl) {
  if (!isObject(acl)) throw bad("the ACL payload must be an object");
  const extra = Object.keys(acl).filter((k) => !ACL_KEYS.includes(k) && acl[k] !== undefined);
  if (extra.length) throw bad(`ACL has unknown members ${extra.sort().join(", ")}`);
  if (typeof acl.gateway !== "string" || !acl.gateway) throw bad("ACL gateway must be a non-empty string");
  const version = unixTime(acl.version, "ACL version");
  const iat = unixTime(acl.iat, "ACL iat");
  if (!Array.isArray(acl.grants)) throw bad("ACL grants must be a list");
  const grants = acl.grants.map(checkGrant);
  const seen = new Set();
  for (const g of grants) {
    if (seen.has(g.sub)) throw bad(`two grants for subject ${g.sub.slice(0, 16)}`);
    seen.add(g.sub);
  }
  const revoked = acl.revoked ?? [];
  if (!Array.isArray(revoked) || !revoked.every((r) => typeof r === "string")) throw bad("ACL revoked must be a list of ids");
  const out = { gateway: acl.gateway, version, iat, grants, revoked: [...new Set(revoked)].sort() };
  if (acl.tz != null) {
    if (typeof acl.tz !== "string" || acl.tz.length > 64 || !/^[A-Za-z0-9_+-]+(\/[A-Za-z0-9_+-]+){0,3}$/.test(acl.tz)) {
      throw bad("ACL tz must be an IANA time zone name");
    }
    out.tz = acl.tz;
  }
  const dlg = acl.revoked_delegations ?? [];
  if (!Array.isArray(dlg) || !dlg.every((r) => typeof r === "string")) throw bad("ACL revoked_delegations must be a list of link ids (jti)");
  if (dlg.length) out.revoked_delegations = [...new Set(dlg)].sort();
  return out;
}

// --------------------------------------------------------------------------- editing
/** An empty ACL (version 0) for GATEWAYID; schedules are read in TZ (null: the gateway's zone). */
export function newAcl(gatewayId, { tz = null, now } = {}) {
  const acl = { gateway: gatewayId, version: 0, iat: nowSeconds(now), grants: [], revoked: [] };
  if (tz) acl.tz = tz;
  return checkAcl(acl);
}

export const nextVersion = (acl) => acl.version + 1;

/** A grant for public key JWK: {things, affordances?, ops, nbf?, exp?, schedule?, role?}. */
export async function makeGrant(jwk, opts) {
  const pub = publicJwk(jwk);
  return checkGrant({ ...opts, sub: await keyId(pub), jwk: pub });
}

/** A grant of preset NAME ("can unlock", "read only") for JWK on THINGS. */
export async function presetGrant(name, jwk, { things, ...rest }) {
  const p = PRESETS[name];
  if (!p) throw fail("bad_request", `unknown preset ${name}`);
  return makeGrant(jwk, { affordances: [...p.affordances], ...rest, things, ops: [...p.ops] });
}

/** The next version with GRANT added, replacing in place any grant of the same subject. */
export function withGrant(acl, grant, { now } = {}) {
  const base = checkAcl(acl);
  const checked = checkGrant(grant);
  const i = base.grants.findIndex((x) => x.sub === checked.sub);
  const g = withSince(checked, i < 0 ? null : base.grants[i], nowSeconds(now));
  const grants = [...base.grants];
  if (i < 0) grants.push(g);
  else grants[i] = g;
  const revoked = base.revoked.filter((r) => r !== g.sub);
  return { ...base, version: nextVersion(base), iat: nowSeconds(now), grants, revoked };
}

/** The next version without SUBJECTID's grant, and with SUBJECTID on the revoked list. */
export function withoutSubject(acl, subjectId, { now } = {}) {
  const base = checkAcl(acl);
  const grants = base.grants.filter((g) => g.sub !== subjectId);
  const revoked = [...new Set([...base.revoked, subjectId])].sort();
  return { ...base, version: nextVersion(base), iat: nowSeconds(now), grants, revoked };
}

// -------------------------------------------------------------------------- signing
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isObject(value)) return value;
  const out = {};
  for (const k of Object.keys(value).sort()) out[k] = sortKeys(value[k]);
  return out;
}

/** The payload text exactly as Python's json.dumps(sort_keys=True, separators=(",", ":")). */
export function aclPayloadText(acl) {
  return JSON.stringify(sortKeys(checkAcl(acl))).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The ACL as a compact JWS signed by the owner KEY (what PUT /acl takes). */
export async function signAcl(key, acl) {
  const checked = checkAcl(acl);
  for (const g of checked.grants) {
    if ((await keyId(g.jwk)) !== g.sub) throw bad(`grant subject ${g.sub.slice(0, 16)} is not the thumbprint of its jwk`);
  }
  const text = aclPayloadText(checked);
  if (text.length > MAX_ACL_BYTES) throw fail("acl_too_large", `ACL larger than ${MAX_ACL_BYTES} bytes`);
  const jws = await signCompact(key, { alg: "ES256", typ: ACL_TYP, kid: key.id }, utf8(text));
  if (jws.length > MAX_ACL_BYTES) throw fail("acl_too_large", `signed ACL larger than ${MAX_ACL_BYTES} bytes`);
  return jws;
}

// ------------------------------------------------------------------------- reading
/** Verify an ACL JWS with the OWNER key (handle or public JWK) for GATEWAYID; its payload. */
export async function verifyAcl(jws, { owner, gatewayId }) {
  if (typeof jws !== "string" || jws.trim().split(".").length !== 3) throw fail("acl_unsigned", "the ACL is not a compact JWS");
  const text = jws.trim();
  const header = peekHeader(text, "the ACL header", "acl_unsigned");
  if (header.alg !== "ES256") throw fail("acl_bad_alg", "ACL signature algorithm must be ES256");
  if (header.typ !== ACL_TYP) throw bad(`ACL header typ must be ${ACL_TYP}`);
  let payload;
  try {
    const ownerKey = await subtle().importKey("jwk", publicJwk(owner), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    ({ payload } = await compactVerify(text, ownerKey, { algorithms: ["ES256"] }));
  } catch (err) {
    throw fail("acl_bad_signature", `the ACL is not signed by the owner key: ${err.message}`);
  }
  const acl = checkAcl(parseJsonObject(fromUtf8(payload), "the ACL payload", "acl_malformed"));
  if (gatewayId && acl.gateway !== gatewayId) throw fail("acl_wrong_gateway", "the ACL is for another gateway");
  return acl;
}

/** Decode an ACL JWS WITHOUT checking its signature (display only, like `acl show`). */
export function readAclUnverified(jws) {
  const parts = String(jws).trim().split(".");
  if (parts.length !== 3) throw fail("acl_unsigned", "the ACL is not a compact JWS");
  return checkAcl(parseJsonObject(fromUtf8(b64uDecode(parts[1], "the ACL payload", "acl_unsigned")), "the ACL payload", "acl_malformed"));
}

/**
 * The ACL to edit, from the answer of GET /acl, verified with the OWNER key: its signed
 * payload; or a new empty ACL (version 0) when none is installed.
 */
export async function parseAcl(answer, { owner, gatewayId }) {
  if (!isObject(answer)) throw fail("bad_request", "not an answer of GET /acl");
  if (answer.version === null || answer.version === undefined) return newAcl(gatewayId);
  if (typeof answer.jws !== "string") {
    throw fail("acl_unverifiable", "the gateway did not send the signed ACL, so it cannot be checked; reinstall one with the command line", 502);
  }
  const acl = await verifyAcl(answer.jws, { owner, gatewayId });
  if (acl.version !== answer.version) throw fail("acl_unverifiable", "the signed ACL is not the installed version", 502);
  return acl;
}
