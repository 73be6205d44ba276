// Operation presets of a grant, as the owner picks them (lib/acl.js PRESETS), and the name of
// the preset an existing grant matches.

import { PRESETS } from "./core.js";

export const PRESET_NAMES = Object.keys(PRESETS); // "can unlock", "read only"

/** The preset name a grant matches, or a plain list of its operations. */
export function presetOf(grant) {
  const ops = [...(grant.ops || [])].sort().join(",");
  for (const name of PRESET_NAMES) {
    if ([...PRESETS[name].ops].sort().join(",") === ops) return name;
  }
  return grant.role === "admin" ? "admin" : `custom: ${ops.replace(/,/g, ", ")}`;
}
