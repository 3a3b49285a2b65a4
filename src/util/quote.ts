/** Values from outside quoted for a one-line message. */

/** How much of a value a message quotes: enough to recognise it, never a whole hostile document. */
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
