// Tiny DOM helpers. Every value from the gateway or a peer goes in as text (textContent),
// never as markup: no innerHTML anywhere in the app (CSP forbids inline code anyway).

let seq = 0;

/** A fresh id for label/for and aria-describedby pairs. */
export const uid = (prefix = "f") => `${prefix}-${++seq}`;

/**
 * h("button", {type: "button", class: "primary", onclick: fn}, "Unlock")
 * Attributes starting with "on" become listeners; `hidden`/`disabled`/... booleans are set as
 * properties; everything else with setAttribute. Children: strings, nodes, arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else if (k === "value" || k === "checked") el[k] = v;
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replace EL's children. */
export const fill = (el, ...children) => append(clear(el), children);

/** A labelled form field: label + control (+ hint), wired with for/id and aria-describedby. */
export function field(label, control, hint) {
  const id = control.id || uid();
  control.id = id;
  const out = h("div", { class: "field" }, h("label", { for: id }, label), control);
  if (hint) {
    const hid = `${id}-hint`;
    control.setAttribute("aria-describedby", hid);
    out.append(h("p", { class: "hint", id: hid }, hint));
  }
  return out;
}

/** A message line in words: kind "error" | "ok" | "info" (role=alert for errors). */
export function note(kind, text) {
  return h("p", { class: `note ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** Short local date-time of unix seconds. */
export function when(ts) {
  if (!Number.isFinite(ts)) return "—";
  return new Date(ts * 1000).toLocaleString([], {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit",
  });
}

/** Shorten an id for display ("abcd…wxyz"), the full id stays in the title. */
export function shortId(id) {
  const s = String(id || "");
  return s.length > 14 ? `${s.slice(0, 6)}…${s.slice(-6)}` : s;
}

/** Copy TEXT to the clipboard; returns true on success (needs a secure context). */
export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
