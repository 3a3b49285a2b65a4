/**
 * Text from outside (a registry's error message, a URL it sent) goes into berth's one-line errors, which
 * the CLI prints to a terminal as they are. `outsideText` makes such text safe and short there; `listSome`
 * keeps a list a registry controls (the platforms of an index) from growing an error line without bound.
 */

/** Characters kept of one piece of outside text: enough for any real registry message or URL. */
export const MAX_OUTSIDE_TEXT_CHARS = 300;
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

/** "a, b, c" — or the first `max` and "and N more". */
export function listSome(items: readonly string[], max = MAX_LISTED_ITEMS): string {
  if (items.length <= max) return items.join(", ");
  return `${items.slice(0, max).join(", ")} and ${items.length - max} more`;
}
