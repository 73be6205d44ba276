// Key screen: create or import this device's key, show its id and public key (text + QR),
// export its backup. The private key lives in the browser as non-extractable CryptoKeys
// (lib/keys.js); it can leave the device only as the passphrase-encrypted backup that is
// made when a passphrase is given at creation or import.

import { copy, field, fill, h, note } from "./dom.js";
import * as core from "./core.js";
import { qrSvg } from "./qr.js";
import { awayForm } from "./away.js";
import { describe } from "./words.js";

const MAX_PASTE = 16 * 1024; // a PEM or backup is a few hundred bytes

function copyButton(text, what, out) {
  return h("button", {
    type: "button",
    onclick: async () => fill(out, (await copy(text))
      ? note("ok", `${what[0].toUpperCase()}${what.slice(1)} copied.`)
      : note("error", "Could not copy: select the text and copy it by hand.")),
  }, `Copy ${what}`);
}

const secret = (autocomplete, required = false) =>
  h("input", { type: "password", autocomplete, minlength: 8, maxlength: 256, required });
const pasteBox = () => h("textarea", { rows: 5, maxlength: MAX_PASTE, spellcheck: "false", autocomplete: "off", required: true });

/** Run MAKE (a key-making call) and adopt its key; refusals in words in OUT. */
async function adopt(ctx, out, what, make) {
  try {
    await ctx.setKey(await make());
  } catch (err) {
    fill(out, note("error", `${what}: ${describe(err)}`));
  }
}

function createForm(ctx, out) {
  const p = secret("new-password");
  return h("form", { onsubmit: (e) => { e.preventDefault(); adopt(ctx, out, "Could not create a key", () => core.createKey(p.value, Boolean(ctx.key))); } },
    field("Backup passphrase (optional)", p,
      "With a passphrase (8+ characters) the app keeps an encrypted backup you can export to move or restore this key. Without one the key can never leave this browser."),
    h("button", { type: "submit", class: "primary" }, ctx.key ? "Create a new key (replaces this one)" : "Create a key"));
}

function importForms(ctx, out) {
  const pem = pasteBox();
  const pemPass = secret("new-password");
  const backup = pasteBox();
  const backupPass = secret("current-password", true);
  const replace = Boolean(ctx.key);
  return [
    h("details", {},
      h("summary", {}, "Import a backup made by this app"),
      h("form", { onsubmit: (e) => { e.preventDefault(); adopt(ctx, out, "Import refused", () => core.importBackup(backup.value.trim(), backupPass.value, replace)); } },
        field("Backup text", backup),
        field("Its passphrase", backupPass),
        h("button", { type: "submit" }, "Import the backup"))),
    h("details", {},
      h("summary", {}, "Import a key file (PEM)"),
      h("form", { onsubmit: (e) => { e.preventDefault(); adopt(ctx, out, "Import refused", () => core.importPem(pem.value.trim(), pemPass.value, replace)); } },
        field("Private key (-----BEGIN PRIVATE KEY-----)", pem,
          "An unencrypted P-256 key file as `streembit-peer keygen` writes it (not the .pub)."),
        field("Backup passphrase (optional)", pemPass, "To keep an encrypted backup of it in the app."),
        h("button", { type: "submit" }, "Import the key"))),
  ];
}

function backupForm(ctx, out) {
  if (!ctx.info.hasBackup) {
    return h("details", {}, h("summary", {}, "Export a backup"),
      h("p", {}, "This key was made without a backup passphrase, so it cannot leave this browser. ",
        "To have a movable key, create a new one with a passphrase (the owner must grant the new key)."));
  }
  const p = secret("current-password", true);
  const result = h("div", {});
  const form = h("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const text = await core.exportBackup(ctx.key, p.value);
        const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
        fill(result,
          field("Backup (encrypted with your passphrase; keep both apart)",
            h("textarea", { rows: 4, readonly: true, spellcheck: "false" }, text)),
          h("a", { href: url, download: `streembit-key-${ctx.info.id.slice(0, 8)}.jwe`, class: "button" },
            "Download the backup"));
      } catch (err) {
        fill(out, note("error", `No backup: ${describe(err)}`));
      }
    },
  }, field("The key's backup passphrase", p), h("button", { type: "submit" }, "Show the backup"), result);
  return h("details", {}, h("summary", {}, "Export a backup"), form);
}

export async function show(el, ctx) {
  const out = h("div", { class: "messages" });
  if (!ctx.key) {
    fill(el,
      h("p", {}, "This browser has no key yet. A key is how the gateway knows you: the owner grants it rights."),
      createForm(ctx, out), out, importForms(ctx, out), awayForm(ctx));
    return;
  }
  const { id, jwk } = ctx.info;
  const pubText = JSON.stringify(jwk);
  fill(el,
    h("p", {}, "Show this QR code to the gateway's owner, or send them the public key text: it is not secret. The owner grants it rights."),
    h("div", { class: "qr-box" }, qrSvg(pubText, "QR code of your public key")),
    h("dl", { class: "kv" },
      h("dt", {}, "Key id"), h("dd", {}, h("code", { class: "wrap" }, id)),
      h("dt", {}, "Role here"), h("dd", {}, ctx.roleWords())),
    field("Public key (JWK)", h("textarea", { rows: 4, readonly: true, spellcheck: "false" }, pubText)),
    h("div", { class: "row" }, copyButton(pubText, "public key", out), copyButton(id, "key id", out)),
    out,
    backupForm(ctx, out),
    h("details", {}, h("summary", {}, "Replace this key"),
      h("p", { class: "hint" }, "The current key is replaced in this browser: export its backup first, or it is lost."),
      createForm(ctx, out), importForms(ctx, out)),
    awayForm(ctx));
}
