/**
 * Command-line parsing: `berth [global options] <command> [options] [args]`. Options may stand before or
 * after the command; `--` ends them. Every mistake is a UsageError (exit 2) naming the option.
 */
import { UsageError } from "../util/errors.ts";

/** One option a command (or every command) accepts, with its help line. */
export interface OptionSpec {
  /** "--store" */
  name: string;
  /** Takes a value ("--store DIR" or "--store=DIR"). */
  value?: string;
  /** May be given more than once (values are collected). */
  repeat?: boolean;
  short?: string;
  help: string;
}

/** A command line taken apart: the command, its arguments and its options. */
export interface ParsedArgs {
  command?: string;
  positional: string[];
  /** Option name (without dashes) → value: true for flags, string, or string[] for repeatable ones. */
  options: Record<string, string | boolean | string[]>;
}

/**
 * Parses argv. Global options may stand anywhere; a command's own options after the command name, since
 * only then is it known which options take a value.
 */
export function parseArgs(
  argv: string[],
  globalSpecs: OptionSpec[],
  commandSpecs: (command: string) => OptionSpec[],
): ParsedArgs {
  const parsed: ParsedArgs = { positional: [], options: {} };
  let specs = globalSpecs;
  let endOfOptions = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!endOfOptions && arg === "--") {
      endOfOptions = true;
      continue;
    }
    if (endOfOptions || !arg.startsWith("-") || arg === "-") {
      if (parsed.command === undefined) {
        parsed.command = arg;
        specs = [...globalSpecs, ...commandSpecs(arg)];
      } else parsed.positional.push(arg);
      continue;
    }
    const equals = arg.indexOf("=");
    const flag = equals > 0 ? arg.slice(0, equals) : arg;
    const inline = equals > 0 ? arg.slice(equals + 1) : undefined;
    const spec = specs.find((candidate) => candidate.name === flag || candidate.short === flag);
    if (!spec) {
      throw new UsageError(
        `unknown option "${flag}"${parsed.command ? ` for "${parsed.command}"` : ""}; see --help`,
      );
    }
    const key = spec.name.replace(/^--/, "");
    let value: string | boolean = true;
    if (spec.value) {
      if (inline !== undefined) value = inline;
      else if (i + 1 < argv.length) value = argv[++i];
      else throw new UsageError(`option ${spec.name} needs a value (${spec.value})`);
    } else if (inline !== undefined) {
      throw new UsageError(`option ${spec.name} takes no value`);
    }
    if (spec.repeat) {
      const list = (parsed.options[key] as string[] | undefined) ?? [];
      list.push(String(value));
      parsed.options[key] = list;
    } else {
      parsed.options[key] = value;
    }
  }
  return parsed;
}

/** Renders an options table for --help. */
export function formatOptions(specs: OptionSpec[]): string {
  const rows = specs.map((
    spec,
  ) => [
    `${spec.short ? `${spec.short}, ` : ""}${spec.name}${spec.value ? ` ${spec.value}` : ""}`,
    spec.help,
  ]);
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join("\n");
}
