// Streembit gateway status page: signs in with a granted key (WebCrypto, ES256) or a pasted
// token, then polls /status.json. Every value from the gateway is put in the page as text
// (textContent), never as markup: audit fields come from remote peers.
"use strict";

const TOKEN_TTL_S = 600;          // a token the page signs lives ten minutes...
const TOKEN_RENEW_S = 60;         // ...and is replaced this long before it expires
const DEFAULT_POLL_MS = 2000;     // live state refresh; ?poll=MS overrides (at least 500)
const MIN_POLL_MS = 500;

const state = {
  gatewayId: null, idReady: null, ident: null, token: null, tokenExp: 0, timer: null, polls: 0,
  gen: 0,  // bumped by every sign-in and sign-out: an older poll loop stops
};
const $ = (id) => document.getElementById(id);

function b64u(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
const utf8 = (text) => new TextEncoder().encode(text);

// ------------------------------------------------------------------ keys and tokens
async function importKey(pem) {
  if (/ENCRYPTED PRIVATE KEY/.test(pem)) {
    throw new Error("this key is passphrase-protected; the browser cannot open it. " +
                    "Paste a token made with streembit-peer token instead.");
  }
  const m = pem.match(/-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/);
  if (!m) throw new Error("not a PKCS#8 private key (-----BEGIN PRIVATE KEY-----)");
  const der = Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  const alg = { name: "ECDSA", namedCurve: "P-256" };
  let extractable;
  try {
    extractable = await crypto.subtle.importKey("pkcs8", der, alg, true, ["sign"]);
  } catch (e) {
    throw new Error("not a P-256 private key");
  }
  const jwk = await crypto.subtle.exportKey("jwk", extractable);
  // RFC 7638 thumbprint: the required members in lexicographic order, no spaces
  const canon = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  const id = b64u(await crypto.subtle.digest("SHA-256", utf8(canon)));
  const key = await crypto.subtle.importKey("pkcs8", der, alg, false, ["sign"]);
  return { id, key };
}

async function signToken(ident, audience) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: "ES256", typ: "JWT", kid: ident.id };
  const claims = {
    iss: ident.id, sub: ident.id, aud: audience, iat: now, nbf: now, exp: now + TOKEN_TTL_S,
    jti: b64u(crypto.getRandomValues(new Uint8Array(16))),
  };
  const input = b64u(utf8(JSON.stringify(header))) + "." + b64u(utf8(JSON.stringify(claims)));
  // WebCrypto's ECDSA signature is r || s (64 bytes): exactly the JWS ES256 form
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, ident.key, utf8(input));
  return { token: input + "." + b64u(sig), exp: claims.exp };
}

function tokenExp(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return Number(JSON.parse(atob(part)).exp) || 0;
  } catch (e) {
    return 0;
  }
}

async function currentToken() {
  const now = Date.now() / 1000;
  if (state.ident && (!state.token || state.tokenExp - now < TOKEN_RENEW_S)) {
    await state.idReady;  // the token's audience is the gateway id
    if (!state.gatewayId) throw new Error("the gateway id is not known yet");
    const t = await signToken(state.ident, state.gatewayId);
    state.token = t.token;
    state.tokenExp = t.exp;
  }
  return state.token;
}

// ------------------------------------------------------------------ rendering helpers
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function setText(id, text) { $(id).textContent = text === null || text === undefined ? "–" : String(text); }
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + " d " : "") + (d || h ? h + " h " : "") + m + " min " + (s % 60) + " s";
}
function show(value) {
  if (value === null) return "none";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(2);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// How peers outside the LAN reach the gateway (docs/reach.md): public, mapped, relayed, local.
function reachText(r) {
  if (!r) return "off";
  const relays = (r.relays || []).map((u) => u.split("/relay/")[0]);
  const served = r.relay_service && r.relay_service.enabled
    ? "; relaying for " + r.relay_service.reservations + " gateways" : "";
  if (r.mode === "public") return "directly at " + (r.observed || "?") + " (public)" + served;
  if (r.mode === "mapped") return "through the router's mapped port " + r.mapped + " (" + r.method + ")";
  if (r.mode === "relayed") {
    const punched = r.upgrades ? ", " + r.upgrades.punched + " direct links punched" : "";
    return relays.length ? "through relays " + relays.join(", ") + punched
                         : "not yet: no relay reservation (" + (r.error || "retrying") + ")";
  }
  return "this network only (" + (r.error || "no DHT peers") + ")";
}

function render(data) {
  const gw = data.gateway;
  setText("gateway-name", gw.name);
  setText("gateway-id", gw.id);
  setText("gateway-owner", gw.owner);
  setText("gateway-version", gw.version);
  setText("gateway-uptime", duration(gw.uptime_s));
  setText("gateway-http", gw.http);
  setText("gateway-p2p", gw.ws ? gw.ws + "  (DHT " + gw.dht + ", " + gw.dht_peers + " peers)" : "off");
  setText("gateway-reach", reachText(gw.reach));
  setText("gateway-acl", gw.acl_version === null ? "none installed" :
          "version " + gw.acl_version + ", " + gw.grants + " grants");
  setText("gateway-audit", gw.audit_healthy ? "healthy" : "UNAVAILABLE: requests are refused");
  setText("viewer", data.viewer.id + " (" + data.viewer.role + ", " + data.viewer.scope + " view)");
  const changed = $("config-changed");
  changed.hidden = !gw.config_changed;
  changed.textContent = gw.config_changed || "";

  const things = $("things").tBodies[0];
  things.replaceChildren();
  for (const t of data.things) {
    const tr = el("tr");
    tr.dataset.thing = t.name;
    const name = el("td");
    name.append(el("b", t.title), el("div", t.name, "mono"));
    const props = el("td");
    for (const [p, v] of Object.entries(t.properties)) {
      const span = el("span", null, "prop");
      span.dataset.prop = p;
      span.append(el("b", p + ": "));
      if ("error" in v) span.append(el("span", "⚠ " + v.error, "fault"));
      else span.append(el("span", show(v.value), p === "fault" && v.value !== null ? "fault" : ""));
      props.append(span);
    }
    tr.append(name, el("td", t.type), props, el("td", t.subscribers));
    things.append(tr);
  }

  const audit = $("audit").tBodies[0];
  audit.replaceChildren();
  for (const r of data.audit) {
    const tr = el("tr");
    tr.className = "audit-row";
    const what = [r.thing, r.affordance].filter(Boolean).join("/");
    tr.append(
      el("td", new Date(r.ts * 1000).toLocaleString()),
      el("td", r.allowed ? "ALLOW" : "DENY", r.allowed ? "allow" : "deny"),
      el("td", r.subject, "mono"),
      el("td", r.op),
      el("td", what),
      el("td", r.reason),
    );
    audit.append(tr);
  }
  if (!data.audit.length) {
    const tr = el("tr");
    tr.append(el("td", "(no records)"));
    audit.append(tr);
  }

  const qr = $("qr");
  qr.replaceChildren();
  for (const q of data.qr) {
    const fig = el("figure");
    const img = el("img");
    img.src = q.svg;        // a data: URI made by the gateway (CSP allows img data: only)
    img.alt = "QR code: " + q.label;
    fig.append(img, el("figcaption", q.label), el("figcaption", q.text, "mono"));
    qr.append(fig);
  }
  state.polls += 1;
  setText("updated", "updated " + new Date().toLocaleTimeString());
  document.body.dataset.polls = String(state.polls);
  document.body.dataset.state = "ready";
}

// ------------------------------------------------------------------ polling
function signedOut(message) {
  state.gen += 1;
  clearTimeout(state.timer);
  state.timer = null;
  state.ident = null;
  state.token = null;
  $("status").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  document.body.dataset.state = message ? "refused" : "signin";
}

function pollInterval() {
  const v = Number(new URLSearchParams(location.search).get("poll"));
  return v >= MIN_POLL_MS ? v : DEFAULT_POLL_MS;
}

async function poll(gen) {
  let resp;
  try {
    const token = await currentToken();
    resp = await fetch("/status.json", {
      headers: { Authorization: "Bearer " + token }, cache: "no-store", credentials: "omit",
    });
  } catch (e) {
    if (gen !== state.gen) return;
    $("updated").textContent = "gateway unreachable (" + e.message + "); retrying";
    state.timer = setTimeout(() => poll(gen), pollInterval());
    return;
  }
  if (gen !== state.gen) return;  // signed out or in again meanwhile
  if (resp.status === 401 || resp.status === 403) {
    let why = "";
    try { why = (await resp.json()).reason || ""; } catch (e) { /* not JSON */ }
    signedOut("refused (" + resp.status + "): " + why);
    return;
  }
  if (resp.ok) {
    const data = await resp.json();
    if (gen !== state.gen) return;
    $("signin").hidden = true;
    $("status").hidden = false;
    render(data);
  } else {
    $("updated").textContent = "gateway answered " + resp.status + "; retrying";
  }
  state.timer = setTimeout(() => poll(gen), pollInterval());
}

function start() {
  clearTimeout(state.timer);
  state.gen += 1;
  $("signin-error").textContent = "";
  poll(state.gen);
}

async function signInWithKey(pem) {
  try {
    state.ident = await importKey(pem);
    state.token = null;
    $("key-pem").value = "";  // do not keep the key in the form
    start();
  } catch (e) {
    signedOut(e.message);
  }
}

function init() {
  // listeners first, so that nothing a user does early is lost; the id arrives meanwhile
  state.idReady = fetch("/status/id", { cache: "no-store" })
    .then((resp) => resp.json())
    .then((data) => {
      state.gatewayId = data.id;
      for (const node of document.querySelectorAll(".gwid")) node.textContent = data.id;
    })
    .catch((e) => { $("signin-error").textContent = "cannot reach the gateway: " + e.message; });
  if (!(window.isSecureContext && window.crypto && crypto.subtle)) {
    $("crypto-note").hidden = false;
    $("sign-key").disabled = true;
    $("key-file").disabled = true;
  }
  $("sign-key").addEventListener("click", () => signInWithKey($("key-pem").value));
  $("key-file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (file) await signInWithKey(await file.text());
  });
  $("use-token").addEventListener("click", () => {
    state.ident = null;
    state.token = $("token").value.trim();
    state.tokenExp = tokenExp(state.token);
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => signedOut(""));
  // #token=... (the fragment never reaches the server): sign in at once, then forget it
  const m = location.hash.match(/^#token=([A-Za-z0-9_.-]+)$/);
  if (m) {
    history.replaceState(null, "", location.pathname + location.search);
    state.token = m[1];
    state.tokenExp = tokenExp(m[1]);
    start();
  }
}

document.addEventListener("DOMContentLoaded", init);
