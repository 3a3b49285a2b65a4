/**
 * Text from outside (a registry's error message, a URL it sent, a digest from a manifest) goes into berth's
 * one-line errors, which the CLI prints to a terminal and the status endpoint serves. `outsideText` makes
 * free text safe and short there, `quoted` does the same for one value, and `listSome` keeps a list a
 * registry controls (the platforms of an index) from growing an error line without bound.
 */

/** Characters kept of one piece of outside text: enough for any real registry message or URL. */
export const MAX_OUTSIDE_TEXT_CHARS = 300;
/**
 * The longest error line berth prints or serves: its own words around a few cleaned, cut pieces of outside
 * text stay far below it; the cap only ever bites when a piece slipped through uncut.
 */
export const MAX_MESSAGE_CHARS = 2_000;
/** Items of an outside list named in a message; the rest are counted. */
export const MAX_LISTED_ITEMS = 10;

// ESC sequences first (CSI "ESC [ … final", OSC "ESC ] … BEL or ESC \", and two-character ones), so that
// their printable tails go with them; then any C0 or C1 control character, and the Unicode bidi controls
// that reorder what a terminal shows.
const ESCAPE_SEQUENCE =
  // deno-lint-ignore no-control-regex
  /\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]?|\x1b./g;
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+/g;

/**
 * `text` with ESC sequences and control characters removed (a run of them, newlines included, becomes
 * one space) and cut to `maxChars` with "…": safe to put on a terminal line.
 */
export function outsideText(text: string, maxChars = MAX_OUTSIDE_TEXT_CHARS): string {
  const clean = text.replace(ESCAPE_SEQUENCE, "").replace(CONTROL, " ").trim();
  return clean.length > maxChars ? `${clean.slice(0, maxChars)}…` : clean;
}

/**
 * An error message as it leaves berth (the CLI's last line, the status document's reasons): one line, no
 * control characters, at most MAX_MESSAGE_CHARS — whatever went into it.
 */
export function messageLine(message: string): string {
  return outsideText(message, MAX_MESSAGE_CHARS);
}

/** "a, b, c" — or the first `max` and "and N more". */
export function listSome(items: readonly string[], max = MAX_LISTED_ITEMS): string {
  if (items.length <= max) return items.join(", ");
  return `${items.slice(0, max).join(", ")} and ${items.length - max} more`;
}

/** How much of one value a message quotes: enough to recognise it (a digest is 71), never a whole document. */
export const QUOTED_CHARACTERS = 80;

/**
 * `value` as a short JSON literal for a message: strings quoted, control characters escaped (JSON does),
 * anything longer than `max` characters cut with "…"; `undefined` reads "nothing".
 *
 *     quoted("sha256:../../x")   // "\"sha256:../../x\""
 */
export function quoted(value: unknown, max = QUOTED_CHARACTERS): string {
  if (value === undefined) return "nothing";
  const cut = (text: string) => text.length > max ? `${text.slice(0, max)}…` : text;
  if (typeof value === "string") return JSON.stringify(cut(value));
  // Numbers, lists and objects as JSON, which escapes what is inside their strings.
  return cut(JSON.stringify(value) ?? String(value));
}
