/**
 * The units an operator writes in the config file: durations ("30s", "5m", "1h30m", or a number of seconds)
 * and sizes ("2MiB", "500KB", or a number of bytes). Pure functions; they answer undefined for anything
 * else, so the caller can say which key was wrong and what it got.
 */

const SECONDS_PER_UNIT: Record<string, number> = { d: 86400, h: 3600, m: 60, s: 1 };
/** One or more number+unit parts, largest unit first by convention (not enforced): "1h30m", "90s", "1.5h". */
const DURATION = /^(?:\d+(?:\.\d+)?(?:d|h|m|s))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(d|h|m|s)/g;

/**
 * Seconds from a number of seconds or a duration string ("30s", "5m", "1h", "1h30m", "2d"); a bare numeric
 * string counts as seconds. Undefined for anything else, negative numbers included.
 */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (/^\d+(?:\.\d+)?$/.test(text)) return Number(text);
  if (!DURATION.test(text)) return undefined;
  let seconds = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) {
    seconds += Number(amount) * SECONDS_PER_UNIT[unit];
  }
  return seconds;
}

/** Byte multipliers: SI units are powers of 1000, IEC units powers of 1024 (as `docker` and `df -H`/`-h`). */
const BYTES_PER_UNIT: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};
/** The unit names parseSize accepts, exactly as written (case-sensitive), for error messages. */
export const SIZE_UNITS = Object.keys(BYTES_PER_UNIT);
/** "500KB", "2 MiB", "1.5GiB"; units are case-sensitive so that "Mb" (megabits?) is not silently guessed. */
const SIZE = /^(\d+(?:\.\d+)?) ?([A-Za-z]*)$/;

/**
 * Whole bytes from a number of bytes or a size string ("2MiB", "500KB", "1.5 GiB", "4096"); fractions of a
 * byte are dropped. Undefined for anything else, negative numbers and unknown units included.
 */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined;
  if (typeof value !== "string") return undefined;
  const match = SIZE.exec(value.trim());
  if (!match) return undefined;
  const multiplier = match[2] === "" ? 1 : BYTES_PER_UNIT[match[2]];
  if (multiplier === undefined) return undefined;
  const bytes = Math.floor(Number(match[1]) * multiplier);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
