/**
 * A tiny leveled logger for the agent: one logfmt-style line per call, so journald and `grep app=shop` work.
 *
 *     2026-11-28T19:00:00.000Z info app=shop digest=sha256:… state=running started
 *
 * Fields come before the message; a value is quoted (JSON string escapes) when it holds spaces, quotes,
 * `=`, control characters or nothing; undefined fields are left out. Callers never pass secrets, but a field
 * whose name says it holds one (token, password, secret, authorization) is written as `[redacted]` anyway.
 */

/** The levels, least severe first: a logger writes its own level and every later one. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of LOG_LEVELS; the config's `logLevel` and createLogger take it. */
export type LogLevel = typeof LOG_LEVELS[number];
/** Key=value pairs written before the message; undefined values are left out, secret-named ones redacted. */
export type LogFields = Record<string, string | number | boolean | undefined>;
/** Writes one line, or nothing below the logger's level; escaping stops a call forging a line or field. */
export type LogMethod = (message: string, fields?: LogFields) => void;

/** What the agent logs through: one method per level, each writing at most one line per call. */
export interface Logger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
}

/** Field names whose values are never written, whatever the caller passed. */
const SECRET_FIELD = /token|passw(or)?d|secret|authorization/i;
/** Values safe to write bare: no space, quote, `=`, backslash or control character, and not empty. */
// deno-lint-ignore no-control-regex
const BARE_VALUE = /^[^\s"=\\\x00-\x1f\x7f]+$/;

function formatValue(value: string | number | boolean): string {
  const text = String(value);
  return BARE_VALUE.test(text) ? text : JSON.stringify(text);
}

/** A message stays on its line: newlines and other control characters are escaped. */
function formatMessage(message: string): string {
  // deno-lint-ignore no-control-regex
  return message.replace(/[\x00-\x1f\x7f]/g, (char) => JSON.stringify(char).slice(1, -1));
}

/** Keys are kept to logfmt's safe characters so a hostile key cannot forge another field. */
function formatKey(key: string): string {
  return key.replace(/[^A-Za-z0-9_.-]/g, "_") || "_";
}

/** One log line, without the trailing newline. */
export function formatLogLine(time: Date, level: LogLevel, message: string, fields: LogFields = {}): string {
  const parts = [time.toISOString(), level];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    parts.push(`${formatKey(key)}=${SECRET_FIELD.test(key) ? "[redacted]" : formatValue(value)}`);
  }
  if (message !== "") parts.push(formatMessage(message));
  return parts.join(" ");
}

const encoder = new TextEncoder();

/** Writes a line to stderr, synchronously so lines from concurrent work never interleave. */
function writeStderr(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/**
 * A logger writing lines at `level` and above through `write` (default: stderr, one line per call).
 *
 *     const log = createLogger("info");
 *     log.info("running", { app: "shop", digest });
 */
export function createLogger(level: LogLevel, write: (line: string) => void = writeStderr): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const method = (methodLevel: LogLevel): LogMethod =>
    LOG_LEVELS.indexOf(methodLevel) < threshold
      ? () => {}
      : (message, fields) => write(formatLogLine(new Date(), methodLevel, message, fields));
  return { debug: method("debug"), info: method("info"), warn: method("warn"), error: method("error") };
}
