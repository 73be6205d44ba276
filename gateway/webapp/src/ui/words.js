// Refusals and faults in words. The gateway answers {"error": CODE, "reason": TEXT}; the
// stable CODE (gateway/codes.py) picks the sentence, the reason is shown after it.

const CODES = {
  unauthenticated: "The gateway did not accept this key: not (or no longer) granted, or this device's clock is off.",
  forbidden: "Not allowed: this key has no grant for that, or not at this time.",
  bad_request: "The gateway refused the request as malformed.",
  invalid_input: "That value has the wrong type.",
  out_of_range: "That value is outside the allowed range.",
  unknown_thing: "No such Thing on this gateway.",
  unknown_affordance: "This Thing has no such property or action.",
  read_only: "This property cannot be changed.",
  unsupported_op: "This Thing does not offer that operation.",
  jammed: "The lock is jammed: the bolt did not reach its position. Check the door, then lock it again.",
  too_large: "The request is too large.",
  rate_limited: "Too many requests: wait a moment and try again.",
  sensor_fault: "The sensor gives no valid reading right now.",
  driver_fault: "The device did not respond correctly.",
  audit_unavailable: "The gateway's audit log is not writable, so it refuses every request (fail closed).",
  busy: "The gateway is busy: try again.",
  storage_unavailable: "The gateway cannot write its state right now.",
  network: "The gateway cannot be reached.",
  timeout: "The gateway did not answer in time.",
  bad_answer: "The gateway's answer was not understood.",
  // away from home (P2P: lib/find.js, lib/p2p.js, lib/records.js)
  not_found: "The gateway was not found: is it running and online?",
  bad_id: "That is not a gateway id (43 characters).",
  bad_address: "That is not a lookup peer address (ws://HOST:PORT).",
  no_lookup_peer: "Give a lookup peer address (Key screen, Away from home).",
  unavailable: "The lookup peer cannot search the network right now.",
  closed: "The connection to the gateway was closed.",
  wrong_audience: "The gateway did not accept the message (another gateway's key?).",
  expired: "The gateway refused the message as expired: check this device's clock.",
  not_yet_valid: "The gateway refused the message as from the future: check this device's clock.",
  record_bad_signature: "The gateway's address record is forged or damaged (refused).",
  record_expired: "The gateway's address record has expired: is the gateway running?",
  record_wrong_dht_key: "The lookup peer answered with another gateway's record (refused).",
  record_key_mismatch: "The gateway's address record is not signed by its key (refused).",
  // access passed on (delegation chains, docs/acl.md §6)
  delegation_malformed: "The access passed on to this key is damaged or not for this gateway.",
  delegation_bad_signature: "The access passed on to this key is not signed by the key that passed it on.",
  delegation_widens: "A step of the access passed on gives more than its giver holds, so it is refused.",
  delegation_loop: "The access passed on goes back to a key it came from.",
  delegation_too_deep: "The access has been passed on more times than the owner allows.",
  delegation_not_allowed: "The owner does not allow this access to be passed on.",
  delegation_revoked: "The access passed on to this key was revoked (by the owner, or its giver lost access).",
  delegation_expired: "The access passed on to this key is not valid now (ended, or not started yet).",
  delegation_wrong_holder: "This access was passed on to another key, not to this one.",
  delegation_used_up: "The access passed on to this key has been used as many times as allowed.",
  // this browser's side (lib/)
  no_webcrypto: "This page cannot use cryptography here: open it on http://localhost or https.",
  bad_key: "That is not a usable key.",
  key_exists: "This browser already has a key.",
  no_key: "Create or import a key first.",
  weak_passphrase: "The passphrase is too short (at least 8 characters).",
  bad_passphrase: "Wrong passphrase.",
  bad_backup: "That is not a key backup of this app.",
  no_backup: "This key has no backup: it was made without a passphrase.",
  acl_malformed: "The access list is not valid.",
  acl_bad_signature: "The gateway's access list is not signed by this owner key.",
  acl_unverifiable: "The gateway's access list cannot be checked.",
  acl_wrong_gateway: "The access list is for another gateway.",
  acl_too_large: "The access list is too large.",
};

/** A sentence for a failed request: any Error, or a {error, reason} / {code, message} object. */
export function describe(err) {
  if (!err) return "Unknown error.";
  const code = err.code || err.error || (err.name === "TypeError" ? "network" : "");
  if (String(code).startsWith("http_") && !CODES[code]) return err.reason || `HTTP error ${code.slice(5)}`;
  const reason = err.reason || err.message || "";
  const base = CODES[code];
  if (!base) return reason || String(err);
  return reason && !reason.startsWith(code) ? `${base} (${reason})` : base;
}

/** The lock's fault property in words (null when there is none). */
export function faultWords(fault) {
  if (fault === null || fault === undefined || fault === "") return null;
  return `Fault: ${String(fault)}`;
}
