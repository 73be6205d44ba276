// The phone web app of a Streembit gateway, served by the gateway at /app (same origin: every
// request goes to the gateway that served the page, through its normal request path; away from
// home, with the setting on, over the P2P binding instead: ui/away.js).
// Screens: Key, Things, Pass on, Owner, Audit, Health (src/ui/). No framework, no inline code.

import * as core from "./ui/core.js";
import { fill, note } from "./ui/dom.js";
import { showInsecure } from "./ui/secure.js";
import { describe } from "./ui/words.js";
import * as keyview from "./ui/keyview.js";
import * as things from "./ui/things.js";
import * as owner from "./ui/owner.js";
import * as audit from "./ui/audit.js";
import * as health from "./ui/health.js";
import * as pass from "./ui/pass.js";

const SCREENS = { key: keyview, things, pass, owner, audit, health };
const OWNER_ONLY = new Set(["owner", "audit"]);
const $ = (id) => document.getElementById(id);

const ctx = {
  key: null,
  info: null,
  gw: null,
  gatewayId: null,
  localId: null, // the id of the gateway that served the page (null when unreachable)
  away: null, // the "Away from home" setting (ui/away.js)
  rights: null,
  chain: null, // the parsed delegation chain this key holds for this gateway (or null)
  passThing: null, // the Thing a card's "Pass on…" button chose for the Pass on screen
  tds: null,
  cleanup: null,
  paused: null, // the screen a hidden tab stopped (visibilitychange)
  screen: null,

  async setKey(key) {
    this.key = key;
    this.info = key ? await core.keyInfo(key) : null;
    await connect();
    this.forgetRights();
    await refreshNav();
    await this.go(key ? "things" : "key", true);
  },
  /** Switch between the local network (HTTP) and away from home (P2P). */
  async setAway(settings) {
    this.away = settings;
    await connect();
    this.forgetRights();
    await refreshNav();
    await this.go(this.key ? "things" : "key", true);
  },
  loadTds() {
    if (!this.tds) this.tds = Promise.resolve(this.gw.things()).catch((err) => { this.tds = null; throw err; });
    return this.tds;
  },
  loadRights() {
    if (!this.rights) this.rights = this.gw.mine().catch((err) => { this.rights = null; throw err; });
    return this.rights;
  },
  forgetRights() { this.rights = null; this.tds = null; },
  /** Check and keep (TEXT: its links) or forget (null) the chain this key holds; then redraw. */
  async setChain(text) {
    if (text) await core.importChain(text, this.key, this.gatewayId);
    else await core.forgetChain(this.gatewayId);
    await connect();
    this.forgetRights();
    await refreshNav();
  },
  /** Forget what was loaded (rights, TDs), then redraw the tabs and the current screen. */
  async refresh() {
    this.forgetRights();
    await refreshNav();
    await go(this.screen, true);
  },
  roleWords() { return roleWords(this.role); },
  role: null,
  say(text) { $("status").textContent = text; },
  go: (name, force) => go(name, force),
};

function roleWords(role) {
  return { owner: "owner", admin: "admin", user: "guest", peer: "remote", delegated: "access passed on" }[role] || (role === null ? "no grant" : "unknown");
}

/** (Re)make ctx.gw for the key, the transport the setting chooses and the chain it holds. */
async function connect() {
  if (ctx.gw) ctx.gw.close();
  const away = ctx.away && ctx.away.on ? ctx.away : null;
  ctx.gatewayId = away ? away.gatewayId : ctx.localId;
  ctx.chain = null;
  try {
    ctx.chain = await core.loadChain(ctx.key, ctx.gatewayId);
  } catch { /* no readable chain: the key's own rights */ }
  ctx.gw = ctx.key && ctx.gatewayId ? new core.Gateway(ctx.key, ctx.gatewayId, away, ctx.chain) : null;
  $("gw").textContent = ctx.gatewayId ? `${ctx.gatewayId.slice(0, 8)}…${away ? " (away, P2P)" : ""}` : "";
}

async function refreshNav() {
  ctx.role = null;
  if (ctx.gw) {
    try {
      ctx.role = (await ctx.loadRights()).role;
    } catch (err) {
      ctx.role = err.code === "unauthenticated" ? null : undefined;
      ctx.say(ctx.role === null
        ? "This key has no grant on this gateway yet: show it to the owner (Key screen)."
        : `The gateway did not answer for this key: ${describe(err)}`);
    }
  }
  for (const a of document.querySelectorAll("nav a[data-screen]")) {
    const s = a.dataset.screen;
    // the owner grants on the Owner screen; "Pass on" is for guests and those they pass on to
    a.parentElement.hidden = OWNER_ONLY.has(s) ? ctx.role !== "owner" : s === "pass" && ctx.role === "owner";
  }
  $("who").textContent = ctx.info ? `Key ${ctx.info.id.slice(0, 8)}… · ${roleWords(ctx.role)}` : "No key";
}

async function go(name, force = false) {
  const screen = SCREENS[name] ? name : "things";
  if (screen === ctx.screen && !force) return;
  if (ctx.cleanup) { try { ctx.cleanup(); } catch { /* already stopped */ } }
  ctx.cleanup = null;
  ctx.screen = screen;
  if (location.hash !== `#${screen}`) history.replaceState(null, "", `#${screen}`);
  for (const sec of document.querySelectorAll("main > section[data-screen]")) sec.hidden = sec.dataset.screen !== screen;
  for (const a of document.querySelectorAll("nav a[data-screen]")) {
    if (a.dataset.screen === screen) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const section = document.querySelector(`main > section[data-screen="${screen}"]`);
  const body = section.querySelector(".body");
  try {
    const cleanup = await SCREENS[screen].show(body, ctx);
    if (ctx.screen === screen) ctx.cleanup = cleanup || null;
    else if (cleanup) cleanup();
  } catch (err) {
    fill(body, note("error", describe(err)));
  }
  if (!force) section.querySelector("h2").focus();
}

// A browser opens about 6 connections per origin and every live value is a stream: a hidden tab
// gives its streams back (so other tabs keep working) and opens them again when shown.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    if (ctx.cleanup) { try { ctx.cleanup(); } catch { /* already stopped */ } }
    ctx.cleanup = null;
    ctx.paused = ctx.screen;
  } else if (ctx.paused) {
    const screen = ctx.paused;
    ctx.paused = null;
    go(screen, true);
  }
});

async function boot() {
  if (!core.secureOk()) {
    document.body.classList.add("insecure");
    $("who").textContent = "Keys unavailable at this address";
    showInsecure($("insecure"));
    return;
  }
  ctx.away = core.awaySettings();
  try {
    ctx.localId = await core.gatewayId();
  } catch (err) {
    if (!ctx.away.on) ctx.say(`Cannot reach the gateway: ${describe(err)}`);
  }
  let key = null;
  try {
    key = await core.loadKey();
  } catch (err) {
    ctx.say(`Cannot open this device's key store: ${describe(err)}`);
  }
  ctx.key = key;
  ctx.info = key ? await core.keyInfo(key) : null;
  await connect();
  await refreshNav();
  window.addEventListener("hashchange", () => go(location.hash.slice(1)));
  await go(location.hash.slice(1) || (key ? "things" : "key"), true);
}

// A module script runs once the document is parsed: the elements below exist.
boot();
