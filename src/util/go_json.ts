/**
 * JSON as Go's encoding/json writes it, so that documents berth makes have the bytes (and so the digests)
 * the Go tools make: `json.Marshal` compact, or `json.MarshalIndent(value, "", indent)`; `<`, `>`, `&`,
 * U+2028 and U+2029 escaped; map keys sorted by their UTF-8 bytes, struct fields in declaration order.
 */

const encoder = new TextEncoder();

/** Orders strings by their UTF-8 bytes, as Go sorts map keys and directory entries. */
export function compareUtf8(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * A Go map: its keys are written sorted. Plain objects are Go structs: fields in insertion order, those
 * that are undefined left out (`omitempty`).
 */
export class GoJsonMap {
  constructor(readonly values: Record<string, unknown>) {}
}

/** A Go string literal, with the characters Go escapes for HTML safety escaped. */
function goString(value: string): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The JSON text of `value` at nesting `depth`. */
function goJson(value: unknown, indent = "", depth = 0): string {
  const open = indent ? "\n" + indent.repeat(depth + 1) : "";
  const close = indent ? "\n" + indent.repeat(depth) : "";
  if (typeof value === "string") return goString(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error(`goJson: ${value} is not an integer`);
    return String(value);
  }
  if (typeof value === "boolean" || value === null) return String(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[${value.map((item) => open + goJson(item, indent, depth + 1)).join(",")}${close}]`;
  }
  let entries: [string, unknown][];
  if (value instanceof GoJsonMap) {
    entries = Object.entries(value.values).sort(([a], [b]) => compareUtf8(a, b));
  } else if (typeof value === "object" && value !== null) {
    entries = Object.entries(value).filter(([, item]) => item !== undefined);
  } else {
    throw new Error(`goJson: cannot encode ${typeof value}`);
  }
  if (entries.length === 0) return "{}";
  const colon = indent ? ": " : ":";
  const fields = entries.map(([key, item]) => open + goString(key) + colon + goJson(item, indent, depth + 1));
  return `{${fields.join(",")}${close}}`;
}

/**
 * Go's json.Marshal of `value` (indent "") or json.MarshalIndent(value, "", indent), as UTF-8. Numbers must
 * be safe integers; anything JSON cannot hold throws.
 */
export function marshalGoJson(value: unknown, indent = ""): Uint8Array {
  return encoder.encode(goJson(value, indent));
}
