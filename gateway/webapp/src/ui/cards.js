// One card per Thing this key may use: live values, the lock with a confirmation step before
// unlocking and its jam/fault state, writable properties with controls bounded by the TD, and
// the Thing's other actions. Only what /acl/mine says this key may do now is actionable;
// everything else is shown read-only or not at all.
//
// Live values: a browser opens at most 6 HTTP/1.1 connections to one origin and every SSE
// stream holds one, so only the most telling properties get a stream (STREAMS.left, shared by
// all cards: the lock's state and faults first); the others are re-read every POLL_MS with
// one readallproperties per Thing (each read is audited: polling is kept slow).

import { fill, h, note } from "./dom.js";
import { show as showValue, valueRow, writer } from "./controls.js";
import { describe } from "./words.js";

// SSE streams per screen. A browser keeps about 6 HTTP/1.1 connections per origin for ALL its
// tabs: one live stream per tab (the first of STREAM_FIRST: a lock's state) lets 5 tabs stay
// live and still leaves a connection for actions; the other values are re-read every POLL_MS.
// Hidden tabs give their stream back (main.js).
export const STREAM_BUDGET = 1;
export const POLL_MS = 30_000;
const STREAM_FIRST = ["state", "fault", "temperature", "on"];

const LOCK_WORDS = {
  locked: "Locked",
  unlocked: "Unlocked",
  jammed: "Jammed: the bolt did not reach its position",
};

function actionButton(thing, name, spec, gw, out, label) {
  const title = label || spec.title || name;
  const btn = h("button", { type: "button" }, title);
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    try {
      const result = await gw.invoke(thing, name, undefined);
      fill(out, note("ok", result === undefined || result === null
        ? `${title}: done.` : `${title}: ${showValue(result, spec.output || {})}.`));
    } catch (err) {
      fill(out, note("error", `${title} refused: ${describe(err)}`));
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}

/** Unlock asks first: "Unlock…" opens a confirm row with the focus on "Yes, unlock". */
function confirmUnlock(thing, title, gw, out) {
  const ask = h("button", { type: "button", class: "primary", "aria-expanded": "false" }, "Unlock…");
  const yes = h("button", { type: "button", class: "danger" }, "Yes, unlock");
  const no = h("button", { type: "button" }, "Cancel");
  const box = h("div", { class: "confirm", role: "group", "aria-label": "Confirm unlock", hidden: true },
    h("p", {}, `Unlock ${title} now? The door can then be opened.`), h("div", { class: "row" }, yes, no));
  const close = () => { box.hidden = true; ask.setAttribute("aria-expanded", "false"); ask.focus(); };
  ask.addEventListener("click", () => { box.hidden = false; ask.setAttribute("aria-expanded", "true"); yes.focus(); });
  no.addEventListener("click", close);
  box.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      const state = await gw.invoke(thing, "unlock", undefined);
      fill(out, note("ok", `${title}: ${LOCK_WORDS[state] || "unlock done"}.`));
    } catch (err) {
      fill(out, note("error", `Unlock refused: ${describe(err)}`));
    } finally {
      yes.disabled = false;
      close();
    }
  });
  return [ask, box];
}

/** Property names of a card in stream priority order. */
const byPriority = (names) => [...names].sort((a, b) => rank(a) - rank(b));
const rank = (n) => (STREAM_FIRST.includes(n) ? STREAM_FIRST.indexOf(n) : STREAM_FIRST.length);

/**
 * The card of Thing NAME (TD TD, rights RIGHTS from /acl/mine); STREAMS {left} is the SSE
 * budget shared by the screen's cards. Returns {node, stop()}.
 */
export function thingCard(name, td, rights, gw, streams) {
  const out = h("div", { class: "messages" });
  const stops = [];
  const props = td.properties || {};
  const actions = td.actions || {};
  const allowedProps = rights.properties || {};
  const allowedActions = rights.actions || {};
  const rows = h("div", { class: "props" });
  const controls = h("div", { class: "controls" });
  const lockState = h("p", { class: "lock-state", "aria-live": "polite", hidden: rights.type !== "lock" });
  const card = h("article", { class: `card thing-${rights.type || "thing"}`, "aria-labelledby": `t-${name}` },
    h("h3", { id: `t-${name}` }, td.title || name), lockState, rows, controls, out);

  const polled = new Map(); // property -> update, refreshed by one readAll per POLL_MS
  const live = new Set();
  for (const pname of byPriority(Object.keys(allowedProps))) {
    const observable = allowedProps[pname].includes("observeproperty");
    if (observable && rank(pname) < STREAM_FIRST.length && streams.left > 0) {
      streams.left -= 1;
      live.add(pname);
    }
  }
  for (const [pname, ops] of Object.entries(allowedProps)) {
    const spec = props[pname] || {};
    const row = valueRow(pname, spec);
    rows.append(row.row);
    const ctl = ops.includes("writeproperty")
      ? writer(pname, spec, (v) => gw.write(name, pname, v), out) : null;
    if (ctl && ctl.node) controls.append(ctl.node);
    const update = (v) => {
      row.set(v);
      if (ctl) ctl.set(v);
      if (pname === "state" && rights.type === "lock") {
        lockState.textContent = LOCK_WORDS[v] || String(v);
        lockState.dataset.state = String(v);
        card.classList.toggle("jammed", v === "jammed");
      }
    };
    const read = () => gw.read(name, pname).then(update, (err) => row.fail(err));
    if (ops.includes("readproperty")) read();
    if (live.has(pname)) {
      try {
        stops.push(gw.observe(name, pname, update, (err) => row.fail(err)));
      } catch (err) {
        row.fail(err);
      }
    } else if (ops.includes("readproperty")) {
      polled.set(pname, update);
    }
  }
  if (polled.size) {
    let busy = false;
    const timer = setInterval(async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const values = (await gw.readAll(name)) || {};
        for (const [pname, update] of polled) if (pname in values) update(values[pname]);
      } catch { /* the next round retries; a refusal shows on the next action */ }
      busy = false;
    }, POLL_MS);
    stops.push(() => clearInterval(timer));
  }

  const acts = h("div", { class: "row actions" });
  for (const [aname, ops] of Object.entries(allowedActions)) {
    if (!ops.includes("invokeaction")) continue;
    const spec = actions[aname] || {};
    if (rights.type === "lock" && aname === "unlock") acts.append(...confirmUnlock(name, td.title || name, gw, out));
    else acts.append(actionButton(name, aname, spec, gw, out));
  }
  if (acts.childElementCount) controls.append(acts);
  if (!controls.childElementCount) controls.append(h("p", { class: "hint" }, "Read only for this key."));
  return { node: card, stop: () => stops.forEach((s) => { try { s(); } catch { /* closed */ } }) };
}
