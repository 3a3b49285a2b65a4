/**
 * What gopkg.in/yaml.v3 (v3.0.1) decodes YAML into when the target is `interface{}`: Go's types as small
 * classes, yaml.v3's `resolve` of plain scalars (resolve.go: YAML 1.2 booleans only, `0755` and `0o755`
 * octal, `_` in numbers, timestamps), and a node of the `yaml` library's documents read that way. Read from
 * the public sources; nothing here is copied from them.
 */
import YAML from "yaml";
import type { Document, Scalar } from "yaml";
import { isMergeKey, mergeSources, resolveNode } from "./yaml_nodes.ts";

/** A Go int (int/int64/uint64 alike: only its decimal form matters here). */
export class GoInt {
  constructor(readonly value: bigint) {}
}
/** A Go float64. */
export class GoFloat {
  constructor(readonly value: number) {}
}
/** A time.Time, kept as its RFC 3339 (nano) form, which is how yaml.v3 writes it. */
export class GoTime {
  constructor(readonly text: string) {}
}
/** A value decoded by yaml.v3 into `interface{}`. */
export type GoValue = null | boolean | string | GoInt | GoFloat | GoTime | GoValue[] | GoMap;
/** A `map[string]interface{}`. */
export type GoMap = Map<string, GoValue>;

/** "a number", "a timestamp", "a mapping"…: what a decoded value is, for messages. */
export function describeGoValue(value: GoValue | undefined): string {
  if (value === null || value === undefined) return "null";
  if (value instanceof GoInt || value instanceof GoFloat) return "a number";
  if (value instanceof GoTime) return "a timestamp";
  if (typeof value === "boolean") return "a boolean";
  if (value instanceof Map) return "a mapping";
  if (Array.isArray(value)) return "a list";
  return "a string";
}

/** A node as yaml.v3 decodes it into `interface{}` (aliases and merge keys resolved). */
export function goValue(doc: Document, node: unknown): GoValue {
  const resolved = resolveNode(doc, node);
  if (resolved === null || resolved === undefined) return null;
  if (YAML.isMap(resolved)) {
    const out: GoMap = new Map();
    for (const pair of resolved.items) {
      if (isMergeKey(pair.key)) continue;
      const key = goValue(doc, pair.key);
      out.set(typeof key === "string" ? key : String(key), goValue(doc, pair.value));
    }
    // Keys of the mapping itself win over merged ones, and earlier merge sources over later ones.
    for (const source of mergeSources(doc, resolved)) {
      for (const [key, value] of goValue(doc, source) as GoMap) if (!out.has(key)) out.set(key, value);
    }
    return out;
  }
  if (YAML.isSeq(resolved)) return resolved.items.map((item) => goValue(doc, item));
  if (YAML.isScalar(resolved)) return goScalar(resolved);
  return fromJs((resolved as { toJSON?: () => unknown }).toJSON?.() ?? null);
}

/** A plain JS value (from a node made in code, which has no source text) as Go would hold it. */
function fromJs(value: unknown): GoValue {
  if (value === null || value === undefined) return null;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "bigint") return new GoInt(value);
  if (typeof value === "number") {
    return Number.isInteger(value) ? new GoInt(BigInt(value)) : new GoFloat(value);
  }
  if (Array.isArray(value)) return value.map(fromJs);
  if (typeof value === "object") return new Map(Object.entries(value).map(([k, v]) => [k, fromJs(v)]));
  return String(value);
}

/** A scalar as yaml.v3 decodes it: by its source text and tag, as the YAML library's own value may differ. */
function goScalar(scalar: Scalar): GoValue {
  const text = scalar.source;
  if (typeof text !== "string") return fromJs(scalar.value);
  const tag = scalar.tag;
  // Explicit !!str, the non-specific "!" and application tags (yaml.v3 cannot resolve those) give strings.
  if (tag && (!tag.startsWith("tag:yaml.org,2002:") || tag === "tag:yaml.org,2002:str")) return text;
  if ((scalar.type ?? "PLAIN") !== "PLAIN" && !tag) return text;
  return resolvePlain(text).value;
}

const RESOLVE_MAP = new Map<string, GoValue>([
  ...["true", "True", "TRUE"].map((s): [string, GoValue] => [s, true]),
  ...["false", "False", "FALSE"].map((s): [string, GoValue] => [s, false]),
  ...["", "~", "null", "Null", "NULL"].map((s): [string, GoValue] => [s, null]),
  ...[".nan", ".NaN", ".NAN"].map((s): [string, GoValue] => [s, new GoFloat(NaN)]),
  ...[".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"].map((
    s,
  ): [string, GoValue] => [s, new GoFloat(Infinity)]),
  ...["-.inf", "-.Inf", "-.INF"].map((s): [string, GoValue] => [s, new GoFloat(-Infinity)]),
]);

const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

/** yaml.v3's resolve() of an untagged plain scalar: its Go value, and whether yaml.v3 reads it as a string. */
export function resolvePlain(text: string): { tag: "str" | "other"; value: GoValue } {
  const first = text === "" ? "" : text[0];
  const hint = first === ""
    ? "M"
    : "+-".includes(first)
    ? "S"
    : "0123456789".includes(first)
    ? "D"
    : "yYnNtTfFoO~".includes(first)
    ? "M"
    : first === "."
    ? "."
    : "";
  if (hint === "") return { tag: "str", value: text };
  if (RESOLVE_MAP.has(text)) return { tag: "other", value: RESOLVE_MAP.get(text)! };
  if (hint === ".") {
    if (/^\.[0-9]+([eE][-+]?[0-9]+)?$/.test(text)) {
      const float = Number(text);
      if (Number.isFinite(float)) return { tag: "other", value: new GoFloat(float) };
    }
    return { tag: "str", value: text };
  }
  if (hint === "D" || hint === "S") {
    const time = parseGoTimestamp(text);
    if (time !== undefined) return { tag: "other", value: new GoTime(time) };
    const plain = text.replaceAll("_", "");
    const int = parseGoInt(plain, true) ?? parseGoInt(plain, false);
    if (int !== undefined) return { tag: "other", value: new GoInt(int) };
    if (YAML_STYLE_FLOAT.test(plain)) {
      const float = Number(plain);
      if (Number.isFinite(float)) return { tag: "other", value: new GoFloat(float) };
    }
    // yaml.v3's own 0b/0o branches only accept what strconv's base-0 parse above already did.
  }
  return { tag: "str", value: text };
}

/** strconv.ParseInt(s, 0, 64) (signed) or strconv.ParseUint(s, 0, 64); undefined where Go fails. */
function parseGoInt(s: string, signed: boolean): bigint | undefined {
  let body = s;
  let negative = false;
  if (signed && (body[0] === "+" || body[0] === "-")) {
    negative = body[0] === "-";
    body = body.slice(1);
  }
  if (body === "") return undefined;
  let base = 10;
  if (body[0] === "0") {
    const prefix = body.length >= 3 ? body[1].toLowerCase() : "";
    if (prefix === "b" || prefix === "o" || prefix === "x") {
      base = prefix === "b" ? 2 : prefix === "o" ? 8 : 16;
      body = body.slice(2);
    } else {
      base = 8;
      body = body.slice(1);
    }
  }
  let value = 0n;
  for (const char of body) {
    const digit = parseInt(char, 36);
    if (Number.isNaN(digit) || digit >= base) return undefined;
    value = value * BigInt(base) + BigInt(digit);
    if (value > 0xffffffffffffffffn) return undefined;
  }
  if (!signed) return value;
  if (negative ? value > 1n << 63n : value >= 1n << 63n) return undefined;
  return negative ? -value : value;
}

/**
 * yaml.v3's parseTimestamp (Go's time.Parse with "2006-1-2T15:4:5.999999999Z07:00", the same with "t",
 * "2006-1-2 15:4:5.999999999" and "2006-1-2"; at most 9 fraction digits, as Go 1.19's Parse takes),
 * returned as Go's RFC3339Nano text, or undefined.
 */
function parseGoTimestamp(text: string): string | undefined {
  const match = text.match(
    /^(\d{4})-(\d{1,2})-(\d{1,2})(?:([Tt]| +)(\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:\d{2})?)?$/,
  );
  if (!match) return undefined;
  const [, y, mo, d, sep, h = "0", mi = "0", s = "0", fraction, zone] = match;
  // A space in Go's layout matches one or more spaces; only the T forms carry a zone.
  if (sep?.startsWith(" ") ? zone !== undefined : sep !== undefined && zone === undefined) return undefined;
  const year = Number(y), month = Number(mo), day = Number(d);
  const hour = Number(h), minute = Number(mi), second = Number(s);
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate() -
    (month === 2 && !(year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) ? 1 : 0);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offset = "Z";
  if (zone && zone !== "Z" && !/^[+-]00:00$/.test(zone)) offset = zone;
  const nanos = (fraction ?? "").padEnd(9, "0").replace(/0+$/, "");
  const two = (n: number) => String(n).padStart(2, "0");
  return `${y}-${two(month)}-${two(day)}T${two(hour)}:${two(minute)}:${two(second)}${
    nanos ? `.${nanos}` : ""
  }${offset}`;
}
