// Property rows and controls of a Thing card: the value shown live, and (when this key may
// write) a labelled control that respects the TD's schema (minimum, maximum, enum, boolean).

import { field, fill, h, note } from "./dom.js";
import { describe, faultWords } from "./words.js";

const UNITS = { "degree Celsius": "°C", celsius: "°C", percent: "%", "om2:degreeCelsius": "°C" };

/** VALUE as text, with the schema's unit. */
export function show(value, schema = {}) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "on" : "off";
  const unit = UNITS[schema.unit] || schema.unit || "";
  const text = typeof value === "number" ? String(Math.round(value * 100) / 100) : String(value);
  return unit ? `${text} ${unit}` : text;
}

/** A row "Title: value" whose value updates; returns {row, set(value), fail(err)}. */
export function valueRow(name, spec) {
  const out = h("span", { class: "value", "aria-live": name === "fault" ? "assertive" : "off" }, "…");
  const row = h("div", { class: `prop prop-${name}` }, h("span", { class: "label" }, spec.title || name), out);
  return {
    row,
    set(value) {
      if (name === "fault") {
        const words = faultWords(value);
        out.textContent = words || "none";
        row.classList.toggle("bad", Boolean(words));
        return;
      }
      out.textContent = show(value, spec);
      row.dataset.value = typeof value === "string" ? value : "";
      row.classList.remove("bad");
    },
    fail(err) {
      out.textContent = describe(err);
      row.classList.add("bad");
    },
  };
}

/**
 * A control writing property NAME of a Thing: number (bounded), enum (select), boolean
 * (toggle button). SEND(value) performs the write; OUT receives the result in words.
 */
export function writer(name, spec, send, out) {
  const title = spec.title || name;
  const run = async (value, done) => {
    try {
      await send(value);
      fill(out, note("ok", `${title} set to ${show(value, spec)}.`));
    } catch (err) {
      fill(out, note("error", `${title} not changed: ${describe(err)}`));
    } finally {
      if (done) done();
    }
  };
  if (spec.type === "boolean") {
    const btn = h("button", { type: "button", "aria-pressed": "false" }, `Turn ${title} on`);
    btn.addEventListener("click", () => {
      const next = btn.getAttribute("aria-pressed") !== "true";
      btn.disabled = true;
      run(next, () => { btn.disabled = false; });
    });
    return {
      node: btn,
      set(v) {
        btn.setAttribute("aria-pressed", v ? "true" : "false");
        btn.textContent = `Turn ${title} ${v ? "off" : "on"}`;
      },
    };
  }
  if (Array.isArray(spec.enum)) {
    const sel = h("select", {}, spec.enum.map((v) => h("option", { value: String(v) }, String(v))));
    const form = h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); run(sel.value); } },
      field(title, sel), h("button", { type: "submit" }, "Set"));
    return { node: form, set(v) { if (document.activeElement !== sel) sel.value = String(v); } };
  }
  if (spec.type === "number" || spec.type === "integer") return numberWriter(title, spec, run, out);
  return { node: null, set() {} };
}

function numberWriter(title, spec, run, out) {
  const min = Number.isFinite(spec.minimum) ? spec.minimum : null;
  const max = Number.isFinite(spec.maximum) ? spec.maximum : null;
  const step = spec.type === "integer" ? 1 : (spec.multipleOf || 0.5);
  const input = h("input", {
    type: "number", inputmode: "decimal", step, min: min ?? undefined, max: max ?? undefined, required: true,
  });
  const bounds = min !== null && max !== null ? `from ${show(min, spec)} to ${show(max, spec)}` : "";
  const nudge = (d) => {
    const v = Number(input.value || min || 0) + d;
    input.value = String(Math.min(max ?? v, Math.max(min ?? v, Math.round(v / step) * step)));
  };
  const form = h("form", {
    class: "inline",
    novalidate: true, // our own check: the bounds in words, in the card's message area
    onsubmit: (e) => {
      e.preventDefault();
      const v = Number(input.value);
      if (input.value === "" || !Number.isFinite(v)) {
        fill(out, note("error", `${title}: enter a number.`));
      } else if ((min !== null && v < min) || (max !== null && v > max)) {
        fill(out, note("error", `${title} must be ${bounds}; ${show(v, spec)} is outside.`));
      } else {
        run(v);
      }
    },
  },
  field(`${title}${bounds ? ` (${bounds})` : ""}`, input),
  h("div", { class: "row" },
    h("button", { type: "button", "aria-label": `Lower ${title}`, onclick: () => nudge(-step) }, "−"),
    h("button", { type: "button", "aria-label": `Raise ${title}`, onclick: () => nudge(step) }, "+"),
    h("button", { type: "submit", class: "primary" }, `Set ${title.toLowerCase()}`)));
  return { node: form, set(v) { if (document.activeElement !== input) input.value = String(v); } };
}
