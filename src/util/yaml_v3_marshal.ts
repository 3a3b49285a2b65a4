/**
 * gopkg.in/yaml.v3 (v3.0.1)'s `yaml.Marshal` of a `map[string]interface{}` it decoded: keys in yaml.v3's
 * "natural" order (sorter.go), 4-space indent, sequences indented inside mappings, no line wrapping, strings
 * quoted when they would read back as another type or as a YAML 1.1 bool or base-60 number (encode.go), and
 * the scalar styles of libyaml's emitter as yaml.v3 changed it (emitterc.go). Read from the public sources;
 * nothing here is copied from them.
 */
import { GoFloat, GoInt, type GoMap, GoTime, type GoValue, resolvePlain } from "./yaml_v3_decode.ts";

/** strconv.FormatFloat(f, 'g', -1, 64), with yaml.v3's spellings of the infinities and NaN. */
function formatGoFloat(f: number): string {
  if (Number.isNaN(f)) return ".nan";
  if (f === Infinity) return ".inf";
  if (f === -Infinity) return "-.inf";
  if (f === 0) return Object.is(f, -0) ? "-0" : "0";
  const sign = f < 0 ? "-" : "";
  const [mantissa, exponent] = Math.abs(f).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(exponent);
  if (exp < -4 || exp >= 6) {
    const abs = Math.abs(exp);
    return `${sign}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ""}e${exp < 0 ? "-" : "+"}${
      abs < 10 ? `0${abs}` : abs
    }`;
  }
  const point = exp + 1;
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** yaml.v3's isBase60Float: strings it quotes so that YAML 1.1 readers do not take them for numbers. */
function isBase60Float(s: string): boolean {
  return /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$/.test(s);
}

const OLD_BOOLS = new Set([
  "y",
  "Y",
  "yes",
  "Yes",
  "YES",
  "on",
  "On",
  "ON",
  "n",
  "N",
  "no",
  "No",
  "NO",
  "off",
  "Off",
  "OFF",
]);

/** yaml.v3's sorter.go keyList.Less for two string keys: letters and digit runs in "natural" order. */
function goKeyLess(a: string, b: string): boolean {
  const ar = Array.from(a, (c) => c.codePointAt(0)!);
  const br = Array.from(b, (c) => c.codePointAt(0)!);
  const isLetter = (c: number) => /\p{L}/u.test(String.fromCodePoint(c));
  const isDigit = (c: number) => /\p{Nd}/u.test(String.fromCodePoint(c));
  let digits = false;
  for (let i = 0; i < ar.length && i < br.length; i++) {
    if (ar[i] === br[i]) {
      digits = isDigit(ar[i]);
      continue;
    }
    const al = isLetter(ar[i]);
    const bl = isLetter(br[i]);
    if (al && bl) return ar[i] < br[i];
    if (al || bl) return digits ? al : bl;
    let an = 0n;
    let bn = 0n;
    if (ar[i] === 48 || br[i] === 48) {
      for (let j = i - 1; j >= 0 && isDigit(ar[j]); j--) {
        if (ar[j] !== 48) {
          an = 1n;
          bn = 1n;
          break;
        }
      }
    }
    let ai = i;
    for (; ai < ar.length && isDigit(ar[ai]); ai++) an = BigInt.asIntN(64, an * 10n + BigInt(ar[ai] - 48));
    let bi = i;
    for (; bi < br.length && isDigit(br[bi]); bi++) bn = BigInt.asIntN(64, bn * 10n + BigInt(br[bi] - 48));
    if (an !== bn) return an < bn;
    if (ai !== bi) return ai < bi;
    return ar[i] < br[i];
  }
  return ar.length < br.length;
}

/** libyaml's is_printable, for a code point. */
function isPrintable(c: number): boolean {
  return c === 0x0a || (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xd7ff) ||
    (c >= 0xe000 && c <= 0xfffd && c !== 0xfeff);
}
function isBreak(c: number | undefined): boolean {
  return c === 0x0d || c === 0x0a || c === 0x85 || c === 0x2028 || c === 0x2029;
}
function isBlank(c: number | undefined): boolean {
  return c === 0x20 || c === 0x09;
}

/** libyaml's analyze_scalar: which styles can carry the string. */
function analyzeScalar(cps: number[]) {
  if (cps.length === 0) {
    return { multiline: false, blockPlain: true, singleQuoted: true, block: false };
  }
  let blockIndicators = false;
  let lineBreaks = false;
  let special = false;
  let tabs = false;
  let leadingSpace = false, leadingBreak = false, trailingSpace = false, trailingBreak = false;
  let breakSpace = false, spaceBreak = false;
  let previousSpace = false, previousBreak = false;
  let precededByWhitespace = true;
  const head = String.fromCodePoint(...cps.slice(0, 3));
  if (head === "---" || head === "...") blockIndicators = true;
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    const followedByWhitespace = i + 1 >= cps.length || isBlank(cps[i + 1]);
    const ch = String.fromCodePoint(c);
    if (i === 0) {
      if ("#,[]{}&*!|>'\"%@`".includes(ch)) blockIndicators = true;
      else if ((ch === "?" || ch === ":" || ch === "-") && followedByWhitespace) blockIndicators = true;
    } else if (ch === ":" && followedByWhitespace) {
      blockIndicators = true;
    } else if (ch === "#" && precededByWhitespace) {
      blockIndicators = true;
    }
    if (c === 0x09) tabs = true;
    else if (!isPrintable(c)) special = true;
    if (c === 0x20) {
      if (i === 0) leadingSpace = true;
      if (i === cps.length - 1) trailingSpace = true;
      if (previousBreak) breakSpace = true;
      previousSpace = true;
      previousBreak = false;
    } else if (isBreak(c)) {
      lineBreaks = true;
      if (i === 0) leadingBreak = true;
      if (i === cps.length - 1) trailingBreak = true;
      if (previousSpace) spaceBreak = true;
      previousSpace = false;
      previousBreak = true;
    } else {
      previousSpace = false;
      previousBreak = false;
    }
    precededByWhitespace = isBlank(c) || isBreak(c) || c === 0;
  }
  let blockPlain = true, singleQuoted = true, block = true;
  if (leadingSpace || leadingBreak || trailingSpace || trailingBreak) blockPlain = false;
  if (trailingSpace) block = false;
  if (breakSpace) blockPlain = singleQuoted = false;
  if (spaceBreak || tabs || special) blockPlain = singleQuoted = false;
  if (spaceBreak || special) block = false;
  if (lineBreaks || blockIndicators) blockPlain = false;
  return { multiline: lineBreaks, blockPlain, singleQuoted, block };
}

type Style = "plain" | "single" | "double" | "literal";

const BEST_INDENT = 4;

/** A port of the parts of libyaml's emitter (as changed in yaml.v3) that a decoded map can reach. */
class GoYamlEmitter {
  out = "";
  column = 0;
  whitespace = true;
  indention = true;

  put(text: string): void {
    this.out += text;
    this.column += Array.from(text).length;
  }
  putBreak(): void {
    this.out += "\n";
    this.column = 0;
    this.indention = true;
  }
  writeBreak(c: number): void {
    if (c === 0x0a) {
      this.putBreak();
    } else {
      this.out += String.fromCodePoint(c);
      this.column = 0;
      this.indention = true;
    }
  }
  writeIndent(indent: number): void {
    const at = Math.max(indent, 0);
    if (!this.indention || this.column > at || (this.column === at && !this.whitespace)) this.putBreak();
    while (this.column < at) this.put(" ");
    this.whitespace = true;
  }
  indicator(text: string, needWhitespace: boolean, isWhitespace: boolean, isIndention: boolean): void {
    if (needWhitespace && !this.whitespace) this.put(" ");
    this.put(text);
    this.whitespace = isWhitespace;
    this.indention = this.indention && isIndention;
  }

  /** increase_indent: `indent` is the emitter's current one, `inSequence` whether the node is a list item. */
  static deeper(indent: number, inSequence: boolean, flow: boolean): number {
    if (indent < 0) return flow ? BEST_INDENT : 0;
    if (inSequence) return indent + 2;
    return BEST_INDENT * Math.floor((indent + BEST_INDENT) / BEST_INDENT);
  }

  document(root: GoValue): string {
    this.node(root, -1, false, false);
    this.writeIndent(0);
    return this.out;
  }

  node(value: GoValue, indent: number, inSequence: boolean, simpleKey: boolean): void {
    if (value instanceof Map || Array.isArray(value)) {
      const empty = value instanceof Map ? value.size === 0 : value.length === 0;
      if (empty) {
        this.indicator(value instanceof Map ? "{" : "[", true, true, false);
        this.indicator(value instanceof Map ? "}" : "]", false, false, false);
        return;
      }
      const inner = GoYamlEmitter.deeper(indent, inSequence, false);
      if (value instanceof Map) this.mapping(value, inner);
      else this.sequence(value, inner);
      return;
    }
    const [text, style] = scalarText(value);
    this.scalar(text, style, GoYamlEmitter.deeper(indent, inSequence, true), simpleKey);
  }

  mapping(map: GoMap, indent: number): void {
    const keys = [...map.keys()].sort((a, b) => goKeyLess(a, b) ? -1 : goKeyLess(b, a) ? 1 : 0);
    for (const key of keys) {
      this.writeIndent(indent);
      const cps = Array.from(key, (c) => c.codePointAt(0)!);
      const simple = !cps.some(isBreak) && new TextEncoder().encode(key).length <= 128;
      if (simple) {
        this.node(key, indent, false, true);
        this.indicator(":", false, false, false);
      } else {
        this.indicator("?", true, false, true);
        this.node(key, indent, false, false);
        this.writeIndent(indent);
        this.indicator(":", true, false, true);
      }
      this.node(map.get(key)!, indent, false, false);
    }
  }

  sequence(items: GoValue[], indent: number): void {
    for (const item of items) {
      this.writeIndent(indent);
      this.indicator("-", true, false, true);
      this.node(item, indent, true, false);
    }
  }

  scalar(text: string, requested: Style, indent: number, simpleKey: boolean): void {
    const cps = Array.from(text, (c) => c.codePointAt(0)!);
    const analysis = analyzeScalar(cps);
    let style = requested;
    if (simpleKey && analysis.multiline) style = "double";
    if (style === "plain" && (!analysis.blockPlain || (cps.length === 0 && simpleKey))) style = "single";
    if (style === "single" && !analysis.singleQuoted) style = "double";
    if (style === "literal" && (!analysis.block || simpleKey)) style = "double";
    if (style === "plain") {
      if (cps.length > 0 && !this.whitespace) this.put(" ");
      this.put(text);
      if (cps.length > 0) this.whitespace = false;
      this.indention = false;
    } else if (style === "single") {
      this.singleQuoted(cps, indent);
    } else if (style === "double") {
      this.doubleQuoted(cps);
    } else {
      this.literal(cps, indent);
    }
  }

  singleQuoted(cps: number[], indent: number): void {
    this.indicator("'", true, false, false);
    let breaks = false;
    for (const c of cps) {
      if (c === 0x20) {
        this.put(" ");
      } else if (isBreak(c)) {
        if (!breaks && c === 0x0a) this.putBreak();
        this.writeBreak(c);
        breaks = true;
      } else {
        if (breaks) this.writeIndent(indent);
        if (c === 0x27) this.put("'");
        this.put(String.fromCodePoint(c));
        this.indention = false;
        breaks = false;
      }
    }
    this.indicator("'", false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  doubleQuoted(cps: number[]): void {
    this.indicator('"', true, false, false);
    const bom = cps[0] === 0xfeff; // libyaml's is_bom looks at the start of the value, whatever the position
    const named: Record<number, string> = {
      0x00: "0",
      0x07: "a",
      0x08: "b",
      0x09: "t",
      0x0a: "n",
      0x0b: "v",
      0x0c: "f",
      0x0d: "r",
      0x1b: "e",
      0x22: '"',
      0x5c: "\\",
      0x85: "N",
      0xa0: "_",
      0x2028: "L",
      0x2029: "P",
    };
    for (const c of cps) {
      if (!isPrintable(c) || bom || isBreak(c) || c === 0x22 || c === 0x5c) {
        const escape = named[c] ??
          (c <= 0xff
            ? `x${c.toString(16).toUpperCase().padStart(2, "0")}`
            : c <= 0xffff
            ? `u${c.toString(16).toUpperCase().padStart(4, "0")}`
            : `U${c.toString(16).toUpperCase().padStart(8, "0")}`);
        this.put(`\\${escape}`);
      } else {
        this.put(String.fromCodePoint(c));
      }
    }
    this.indicator('"', false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  literal(cps: number[], indent: number): void {
    this.indicator("|", true, false, false);
    if (cps[0] === 0x20 || isBreak(cps[0])) this.indicator(String(BEST_INDENT), false, false, false);
    const last = cps.length - 1;
    let chomp = "";
    if (!isBreak(cps[last])) chomp = "-";
    else if (last === 0 || isBreak(cps[last - 1])) chomp = "+";
    if (chomp) this.indicator(chomp, false, false, false);
    this.whitespace = true;
    let breaks = true;
    for (const c of cps) {
      if (isBreak(c)) {
        this.writeBreak(c);
        breaks = true;
      } else {
        if (breaks) this.writeIndent(indent);
        this.put(String.fromCodePoint(c));
        this.indention = false;
        breaks = false;
      }
    }
  }
}

/** The text and requested style yaml.v3's encoder gives a scalar value (encode.go). */
function scalarText(value: GoValue): [string, Style] {
  if (value === null) return ["null", "plain"];
  if (typeof value === "boolean") return [value ? "true" : "false", "plain"];
  if (value instanceof GoInt) return [value.value.toString(), "plain"];
  if (value instanceof GoFloat) return [formatGoFloat(value.value), "plain"];
  if (value instanceof GoTime) return [value.text, "plain"];
  const text = value as string;
  if (text.includes("\n")) return [text, "literal"];
  const plainOk = resolvePlain(text).tag === "str" && !isBase60Float(text) && !OLD_BOOLS.has(text);
  return [text, plainOk ? "plain" : "double"];
}

/** gopkg.in/yaml.v3's `yaml.Marshal` of a `map[string]interface{}` decoded by yaml.v3. */
export function marshalGoYaml(value: GoMap): string {
  return new GoYamlEmitter().document(value);
}
