// The "add a guest" form: public key (paste, or scan with the camera), Things,
// an operations preset, a validity window, a weekly schedule and whether the guest may pass it
// on (`delegate`, docs/acl.md §6). Hands ON_GRANT a request
// {jwk, id, preset, opts: {things, nbf?, exp?, schedule?, delegate?}}; the owner screen makes the grant
// with lib/acl.js (presetGrant), signs and pushes it.

import { field, fill, h, note, uid } from "./dom.js";
import { parsePublicKey } from "./pubkey.js";
import { canScan, scanner } from "./scan.js";
import { describe } from "./words.js";
import { PRESET_NAMES } from "./presets.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_WORDS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/** "mon,tue,wed 08:00-18:00" from the checked days and a time range; null when no day is checked. */
export function scheduleSpec(days, from, to) {
  const picked = DAYS.filter((_, i) => days[i]);
  if (!picked.length) return null;
  const end = to === "00:00" ? "24:00" : to;
  if (!/^\d\d:\d\d$/.test(from) || !/^\d\d:\d\d$/.test(end) || from >= end) {
    throw new Error("the schedule's start must be before its end (same day; use 00:00 as end for midnight)");
  }
  return `${picked.length === 7 ? "daily" : picked.join(",")} ${from}-${end}`;
}

export const unix = (v) => (v ? Math.floor(new Date(v).getTime() / 1000) : null);

/**
 * A text field filled by hand or by its "Scan" button (a public key here and in the "Pass on
 * access" form, an access text there): {node, text (the textarea), stop()}. Messages go to OUT.
 */
export function keyField(out, { label, hint, scanLabel, maxlength = 4096, what = "the key" }) {
  const text = h("textarea", { rows: 4, maxlength, spellcheck: "false", autocomplete: "off", required: true });
  const scan = scanner();
  const scanBtn = canScan() ? h("button", {
    type: "button",
    onclick: async () => {
      try {
        const read = await scan.start();
        if (read) { text.value = read; fill(out, note("ok", "QR code read.")); }
      } catch (err) {
        fill(out, note("error", `Camera unavailable: ${err.message || err}. Paste ${what} instead.`));
      }
    },
  }, scanLabel) : h("p", { class: "hint" }, `No camera here: paste ${what}.`);
  return { node: [field(label, text, hint), h("div", { class: "row" }, scanBtn), scan.node], text, stop: () => scan.stop(null) };
}

/** The weekly schedule fieldset: {node, spec()} (spec: null when no day is checked). */
export function scheduleFields(legend = "Weekly schedule (optional)") {
  const dayBoxes = DAYS.map(() => h("input", { type: "checkbox", id: uid("d") }));
  const from = h("input", { type: "time", value: "08:00" });
  const to = h("input", { type: "time", value: "18:00" });
  const node = h("fieldset", {}, h("legend", {}, legend),
    h("div", { class: "days" }, dayBoxes.map((b, i) => h("div", { class: "check" }, b, h("label", { for: b.id }, DAY_WORDS[i])))),
    h("div", { class: "row" }, field("From", from), field("To", to)),
    h("p", { class: "hint" }, "No day checked: any day, any time. Schedules are read in the gateway's time zone."));
  return { node, spec: () => scheduleSpec(dayBoxes.map((b) => b.checked), from.value, to.value) };
}

/** The form; ON_GRANT(request, out) signs and pushes. THINGS: [{name, title}]; KNOWN: id -> jwk. */
export function grantForm(things, known, onGrant) {
  const out = h("div", { class: "messages" });
  const key = keyField(out, {
    label: "Guest's public key",
    hint: "The JSON under their QR code (Key screen of their app), or a PEM public key.",
    scanLabel: "Scan the guest's QR code",
  });
  const keyText = key.text;

  const all = h("input", { type: "checkbox", id: uid("all") });
  const boxes = things.map((t) => ({ name: t.name, box: h("input", { type: "checkbox", id: uid("t"), value: t.name }) }));
  all.addEventListener("change", () => boxes.forEach((b) => { b.box.disabled = all.checked; }));
  const thingSet = h("fieldset", {}, h("legend", {}, "Things"),
    h("div", { class: "check" }, all, h("label", { for: all.id }, "All Things, also future ones")),
    boxes.map((b, i) => h("div", { class: "check" }, b.box, h("label", { for: b.box.id }, things[i].title))));

  const presets = PRESET_NAMES.map((name, i) => {
    const r = h("input", { type: "radio", name: "preset", id: uid("p"), value: name, checked: i === 0 });
    return h("div", { class: "check" }, r, h("label", { for: r.id }, name));
  });
  const presetSet = h("fieldset", {}, h("legend", {}, "What the guest may do"), presets);

  const nbf = h("input", { type: "datetime-local" });
  const exp = h("input", { type: "datetime-local" });
  const windowSet = h("fieldset", {}, h("legend", {}, "Valid (optional)"),
    field("From", nbf), field("Until", exp, "Empty: no limit. Times are this device's local time."));

  const sched = scheduleFields();
  const delegate = h("select", {}, ["No", "Yes, one step", "Yes, 2 steps", "Yes, 3 steps", "Yes, 4 steps"]
    .map((t, i) => h("option", { value: String(i) }, t)));
  const passSet = field("May pass it on", delegate,
    "The guest may sign, offline, a narrower right for someone else (e.g. a cleaner), who may pass it on again as many steps as chosen. Revoking the guest ends it all.");

  const form = h("form", {
    class: "grant-form",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const { id, jwk } = await parsePublicKey(keyText.value, known);
        const picked = all.checked ? ["*"] : boxes.filter((b) => b.box.checked).map((b) => b.name);
        if (!picked.length) throw new Error("choose at least one Thing");
        const preset = form.querySelector("input[name=preset]:checked").value;
        const opts = { things: picked };
        const n = unix(nbf.value);
        const x = unix(exp.value);
        if (n !== null && x !== null && x <= n) throw new Error("'Until' must be after 'From'");
        if (x !== null && x <= Date.now() / 1000) throw new Error("'Until' is already past");
        if (n !== null) opts.nbf = n;
        if (x !== null) opts.exp = x;
        const spec = sched.spec();
        if (spec) opts.schedule = spec;
        if (Number(delegate.value) > 0) opts.delegate = Number(delegate.value);
        await onGrant({ id, jwk, preset, opts }, out);
      } catch (err) {
        fill(out, note("error", `Not granted: ${describe(err)}`));
      }
    },
  },
  key.node,
  thingSet, presetSet, windowSet, sched.node, passSet,
  h("button", { type: "submit", class: "primary" }, "Grant, sign and push"), out);
  return { node: form, stop: key.stop };
}
