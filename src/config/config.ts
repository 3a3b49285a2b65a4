/**
 * The config file: one YAML mapping of what the operator set (docs/config.md lists every key). Parsed
 * with `yaml`, validated with zod, strictly: an unknown key is an error that names it, so a typo is caught
 * instead of silently falling back to a default. Every error is one line naming the file, the key path and
 * what was expected, e.g. `/etc/berth/config.yml: pollInterval: expected seconds or a duration like 30s, 5m,
 * 1h, got "5 minutes"`.
 *
 * A key left out (or written with no value) takes its default; keys whose default belongs to the CLI (store,
 * composeRoot, docker.host, …) stay undefined so that precedence (flag > environment > file > default) is
 * decided in one place, `src/cli/context.ts`.
 */
import { parseDocument } from "yaml";
import { z } from "zod";
import { BerthError } from "../util/errors.ts";
import { LOG_LEVELS } from "../util/log.ts";
import { parseReference } from "../oci/reference.ts";
import { formatPlatform, parsePlatform } from "../oci/platform.ts";
import { appName } from "../app/name.ts";
import { parseDuration, parseSize, SIZE_UNITS } from "./units.ts";
import { isLoopback, type ListenAddress, parseListen } from "../util/listen_address.ts";
import { DEFAULT_CONFIG_FILE, DEFAULT_POLL_JITTER_FRACTION, defaultConfig } from "./defaults.ts";
import type { Config } from "./types.ts";

export { DEFAULT_CONFIG_FILE, defaultConfig };
export type { Config };

/** Where a value was wrong (`apps[1]`, `status.listen`) and the sentence saying what was expected. */
interface Problem {
  keyPath: string;
  message: string;
}

function configError(file: string, problem: Problem, more = 0): BerthError {
  const where = problem.keyPath === "" ? "" : `${problem.keyPath}: `;
  const others = more > 0 ? ` (and ${more} more problem${more === 1 ? "" : "s"})` : "";
  return new BerthError("invalid_input", `${file}: ${where}${problem.message}${others}`);
}

/** The offending value in a message: strings quoted, anything else as compact JSON, cut to one short line. */
function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** `apps[1]`, `status.listen`. */
function formatKeyPath(path: (string | number)[]): string {
  return path.map((part, index) => typeof part === "number" ? `[${part}]` : index === 0 ? part : `.${part}`)
    .join("");
}

/**
 * A leaf value: `parse` answers the value, or undefined when the input is not `expected`; `why` may add
 * the parser's own reason (a reference's, say). Null (a key written with no value) means "not set".
 */
function leaf<T>(
  expected: string,
  parse: (input: unknown) => T | undefined,
  why?: (input: unknown) => string,
) {
  return z.unknown().transform((input, context): T | undefined =>
    input === null || input === undefined ? undefined : checked(input, context, expected, parse, why)
  );
}

/** A list item: like a leaf, but an empty item is an error, not "not set". */
function item<T>(
  expected: string,
  parse: (input: unknown) => T | undefined,
  why?: (input: unknown) => string,
) {
  return z.unknown().transform((input, context): T => checked(input, context, expected, parse, why));
}

function checked<T>(
  input: unknown,
  context: z.RefinementCtx,
  expected: string,
  parse: (input: unknown) => T | undefined,
  why?: (input: unknown) => string,
): T {
  const value = parse(input);
  if (value !== undefined) return value;
  const reason = why?.(input);
  context.addIssue({
    code: z.ZodIssueCode.custom,
    message: `expected ${expected}, got ${show(input)}${reason ? ` (${reason})` : ""}`,
  });
  return z.NEVER;
}

const nonEmptyString = (input: unknown) =>
  typeof input === "string" && input.trim() !== "" ? input : undefined;
const absolutePath = (input: unknown) =>
  typeof input === "string" && input.startsWith("/") ? input.replace(/(.)\/+$/, "$1") : undefined;
const whole = (min: number, max: number) => (input: unknown) =>
  typeof input === "number" && Number.isInteger(input) && input >= min && input <= max ? input : undefined;

function tryParse<T>(parse: (text: string) => T): (input: unknown) => T | undefined {
  return (input) => {
    if (typeof input !== "string") return undefined;
    try {
      return parse(input);
    } catch (error) {
      if (error instanceof BerthError) return undefined;
      throw error;
    }
  };
}

/** parseReference's own reason, without the quoted input the message already shows. */
function referenceProblem(input: unknown): string {
  if (typeof input !== "string") return "";
  try {
    parseReference(input);
    return "";
  } catch (error) {
    return error instanceof BerthError ? error.message.replace(/^invalid reference "[^"]*": /, "") : "";
  }
}

const DURATION_EXPECTED = "seconds or a duration like 30s, 5m, 1h";
const positiveDuration = (input: unknown) => {
  const seconds = parseDuration(input);
  return seconds !== undefined && seconds > 0 ? seconds : undefined;
};
const SIZE_EXPECTED = `bytes or a size like 500KB, 2MiB (units: ${SIZE_UNITS.join(", ")})`;
const positiveSize = (input: unknown) => {
  const bytes = parseSize(input);
  return bytes !== undefined && bytes > 0 ? bytes : undefined;
};
/** A rate is a size per second; "2MiB/s" reads naturally, so the "/s" is allowed. */
const rate = (input: unknown) => {
  const bytes = parseSize(typeof input === "string" ? input.replace(/\/s$/, "") : input);
  return bytes !== undefined && bytes > 0 ? bytes : undefined;
};
/** "95" or "95%". */
const percent = (input: unknown) => {
  const value = typeof input === "string" && /^\d+(?:\.\d+)?%$/.test(input.trim())
    ? Number(input.trim().slice(0, -1))
    : input;
  return typeof value === "number" && value >= 1 && value <= 100 ? value : undefined;
};
/** A variable name compose can interpolate (`${NAME}`), the shell's rule. */
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** compose's and docker's own settings: berth sets the ones it needs (file, project, engine), no one else. */
const COMPOSE_SETTING = /^(?:COMPOSE|DOCKER)_/i;
const variableName = (input: unknown) =>
  typeof input === "string" && VARIABLE_NAME.test(input) && !COMPOSE_SETTING.test(input) ? input : undefined;
const variableProblem = (input: unknown) =>
  typeof input === "string" && COMPOSE_SETTING.test(input)
    ? "COMPOSE_* and DOCKER_* set compose's own behaviour, which berth decides: the engine is docker.host"
    : "";
/** A DNS name or IPv4 address, without a port: what a Host header names. */
const HOST_NAME =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;
const REGISTRY_HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** The keys each mapping allows, by key path, for "unknown key" and "expected a mapping" messages. */
const MAPPING_KEYS = new Map<string, string[]>();

/** A strict mapping (unknown keys are errors); null, a key written with no value, means "not set". */
function mapping<Shape extends z.ZodRawShape>(keyPath: string, shape: Shape) {
  MAPPING_KEYS.set(keyPath, Object.keys(shape));
  return z.preprocess((input) => input === null ? undefined : input, z.object(shape).strict().optional());
}

function list<T extends z.ZodTypeAny>(item: T) {
  return z.preprocess((input) => input === null ? undefined : input, z.array(item).optional());
}

const ConfigSchema = mapping("", {
  store: leaf("an absolute directory path", absolutePath),
  composeRoot: leaf("an absolute directory path", absolutePath),
  docker: mapping("docker", {
    host: leaf(
      "unix:///path/to/docker.sock or tcp://host:port",
      (input) =>
        typeof input === "string" && /^(?:unix:\/\/\/|tcp:\/\/|http:\/\/)./.test(input) ? input : undefined,
    ),
  }),
  compose: leaf('a command like "docker compose" or "docker-compose"', nonEmptyString),
  composeEnvironment: list(
    item(
      "an environment variable name like MY_SETTING (letters, digits and _), not COMPOSE_* or DOCKER_*",
      variableName,
      variableProblem,
    ),
  ),
  platform: leaf(
    "os/arch[/variant], e.g. linux/arm64",
    tryParse((text) => formatPlatform(parsePlatform(text))),
  ),
  apps: list(
    item(
      "a reference like registry.example.com/repo:tag",
      tryParse((text) => {
        parseReference(text);
        return text;
      }),
      referenceProblem,
    ),
  ),
  pollInterval: leaf(DURATION_EXPECTED, positiveDuration),
  pollJitter: leaf(DURATION_EXPECTED, parseDuration),
  status: mapping("status", {
    listen: leaf(
      "host:port, [v6]:port or an absolute unix socket path",
      (input) => typeof input === "string" && listenAddress(input) ? input : undefined,
    ),
    token: leaf("a non-empty string", nonEmptyString),
    hosts: list(
      item(
        "a host name like device.example.com (no port, no scheme)",
        (input) => typeof input === "string" && HOST_NAME.test(input) ? input : undefined,
      ),
    ),
  }),
  peer: mapping("peer", {
    listen: leaf(
      "host:port or [v6]:port",
      (input) => typeof input === "string" && listenAddress(input)?.transport === "tcp" ? input : undefined,
    ),
    token: leaf("a non-empty string", nonEmptyString),
  }),
  parallel: leaf("a whole number from 1 to 64", whole(1, 64)),
  rateLimit: leaf(`bytes per second or a size like 500KB, 2MiB (units: ${SIZE_UNITS.join(", ")})`, rate),
  storage: mapping("storage", {
    watermark: leaf("a percentage from 1 to 100", percent),
    reserve: leaf(SIZE_EXPECTED, parseSize),
  }),
  registries: mapping("registries", {
    credentials: leaf("an absolute file path", absolutePath),
    certsDir: leaf("an absolute directory path", absolutePath),
    policy: leaf("an absolute file path", absolutePath),
    insecure: list(
      item(
        "a registry host like registry.local:5000",
        (input) => typeof input === "string" && REGISTRY_HOST.test(input) ? input : undefined,
      ),
    ),
    stallTimeout: leaf(DURATION_EXPECTED, positiveDuration),
    timeout: leaf(DURATION_EXPECTED, positiveDuration),
  }),
  keep: leaf("a whole number, 0 or more", whole(0, Number.MAX_SAFE_INTEGER)),
  timeouts: mapping("timeouts", {
    stall: leaf(DURATION_EXPECTED, positiveDuration),
    start: leaf(DURATION_EXPECTED, positiveDuration),
    retryMax: leaf(DURATION_EXPECTED, positiveDuration),
    engine: leaf(DURATION_EXPECTED, positiveDuration),
    soak: leaf(DURATION_EXPECTED, positiveDuration),
  }),
  limits: mapping("limits", {
    bundle: leaf(SIZE_EXPECTED, positiveSize),
    bundleIndex: leaf(SIZE_EXPECTED, positiveSize),
    layersMeta: leaf(SIZE_EXPECTED, positiveSize),
    imageConfig: leaf(SIZE_EXPECTED, positiveSize),
  }),
  logLevel: leaf(
    `one of ${LOG_LEVELS.join(", ")}`,
    (input) => LOG_LEVELS.find((level) => level === input),
  ),
});

/** Edits between two keys, a swap of neighbours counting as one (optimal string alignment distance). */
function editDistance(a: string, b: string): number {
  const rows = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i || j),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
      }
    }
  }
  return rows[a.length][b.length];
}

/** The allowed key a misspelt one most likely meant: about one edit in four characters, case and _ aside. */
function closestKey(key: string, allowed: string[]): string | undefined {
  const plain = (text: string) => text.toLowerCase().replace(/[_-]/g, "");
  const scored = allowed.map((candidate) => ({
    candidate,
    edits: editDistance(plain(key), plain(candidate)),
  }))
    .sort((a, b) => a.edits - b.edits);
  const best = scored[0];
  return best && best.edits <= Math.max(1, Math.floor(key.length / 4)) ? best.candidate : undefined;
}

function describeIssue(issue: z.ZodIssue, input: unknown): Problem {
  const keyPath = formatKeyPath(issue.path);
  if (issue.code === z.ZodIssueCode.unrecognized_keys) {
    const allowed = MAPPING_KEYS.get(issue.path.join(".")) ?? [];
    const key = issue.keys[0];
    const guess = closestKey(key, allowed);
    return {
      keyPath: formatKeyPath([...issue.path, key]),
      message: `unknown key${guess ? ` (did you mean ${guess}?)` : ""}; expected one of: ${
        allowed.join(", ")
      }`,
    };
  }
  if (issue.code === z.ZodIssueCode.invalid_type) {
    let value: unknown = input;
    for (const part of issue.path) value = (value as Record<string | number, unknown>)?.[part];
    if (issue.expected === "object") {
      const keys = MAPPING_KEYS.get(issue.path.join(".")) ?? [];
      const what = issue.path.length === 0
        ? "a mapping of settings (key: value lines)"
        : `a mapping with keys ${keys.join(", ")}`;
      return { keyPath, message: `expected ${what}, got ${show(value)}` };
    }
    if (issue.expected === "array") return { keyPath, message: `expected a list, got ${show(value)}` };
  }
  return { keyPath, message: issue.message };
}

/** The parsed listen address, or undefined when `text` is not one (the schema reports it). */
function listenAddress(text: string): ListenAddress | undefined {
  try {
    return parseListen(text);
  } catch {
    return undefined;
  }
}

/** Checks that span keys: what each key alone cannot tell. */
function crossChecks(config: Config): Problem | undefined {
  if (!isLoopback(listenAddress(config.status.listen)!) && config.status.token === undefined) {
    return {
      keyPath: "status.token",
      message:
        `required when status.listen (${config.status.listen}) is not a loopback address or a unix socket: the status endpoint must not be open to the network`,
    };
  }
  const peer = config.peer.listen;
  if (peer !== undefined && !isLoopback(listenAddress(peer)!) && config.peer.token === undefined) {
    return {
      keyPath: "peer.token",
      message:
        `required when peer.listen (${peer}) is not a loopback address: neighbours must send it to read the store`,
    };
  }
  const names = new Map<string, number>();
  for (const [index, text] of config.apps.entries()) {
    const name = appName(parseReference(text));
    const earlier = names.get(name);
    if (earlier !== undefined) {
      return {
        keyPath: `apps[${index}]`,
        message: `"${text}" is the same app as apps[${earlier}] ("${
          config.apps[earlier]
        }"): both are named "${name}", and an app name is its compose project`,
      };
    }
    names.set(name, index);
  }
  return undefined;
}

/**
 * Parses and validates the text of a config file; `path` names the file in errors. Throws a BerthError
 * ("invalid_input") naming the file and the key path (or line and column for YAML syntax).
 */
export function parseConfig(text: string, path: string): Config {
  const config = withDefaults(validate(text, path));
  const problem = crossChecks(config);
  if (problem) throw configError(path, problem);
  return config;
}

/** The file's keys, checked against the schema: the first problem in the file's order is thrown. */
function validate(text: string, path: string): z.infer<typeof ConfigSchema> {
  const document = parseDocument(text, { uniqueKeys: true });
  const syntax = document.errors[0];
  if (syntax) {
    const position = syntax.linePos?.[0];
    const at = position ? `line ${position.line}, column ${position.col}: ` : "";
    const reason = syntax.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    throw new BerthError("invalid_input", `${path}: ${at}invalid YAML: ${reason}`);
  }
  let input: unknown;
  try {
    input = document.toJS();
  } catch (error) {
    // e.g. an alias expanding past yaml's limit (a "billion laughs" file)
    throw new BerthError("invalid_input", `${path}: invalid YAML: ${(error as Error).message}`);
  }
  const result = ConfigSchema.safeParse(input);
  if (!result.success) {
    // The first problem in the file, not in the schema's order, is the one a person fixes first.
    const offset = (issue: z.ZodIssue) => {
      const keyPath = issue.code === z.ZodIssueCode.unrecognized_keys
        ? [...issue.path, issue.keys[0]]
        : issue.path;
      const node = document.getIn(keyPath, true) as { range?: [number, number, number] } | undefined;
      return node?.range?.[0] ?? Infinity;
    };
    const issues = [...result.error.issues].sort((a, b) => offset(a) - offset(b));
    const problems = issues.reduce(
      (count, issue) => count + (issue.code === z.ZodIssueCode.unrecognized_keys ? issue.keys.length : 1),
      0,
    );
    throw configError(path, describeIssue(issues[0], input), problems - 1);
  }
  return result.data;
}

/** The file's keys with a default for every key left out (CLI-defaulted keys stay unset). */
function withDefaults(parsed: z.infer<typeof ConfigSchema>): Config {
  const file = parsed ?? {};
  const defaults = defaultConfig();
  const pollInterval = file.pollInterval ?? defaults.pollInterval;
  return {
    store: file.store,
    composeRoot: file.composeRoot,
    docker: { host: file.docker?.host },
    compose: file.compose,
    composeEnvironment: file.composeEnvironment ?? defaults.composeEnvironment,
    platform: file.platform,
    apps: file.apps ?? defaults.apps,
    pollInterval,
    pollJitter: file.pollJitter ?? pollInterval * DEFAULT_POLL_JITTER_FRACTION,
    status: {
      listen: file.status?.listen ?? defaults.status.listen,
      token: file.status?.token,
      hosts: file.status?.hosts ?? defaults.status.hosts,
    },
    peer: { listen: file.peer?.listen, token: file.peer?.token },
    parallel: file.parallel,
    rateLimit: file.rateLimit,
    storage: {
      watermark: file.storage?.watermark ?? defaults.storage.watermark,
      reserve: file.storage?.reserve ?? defaults.storage.reserve,
    },
    registries: {
      credentials: file.registries?.credentials,
      certsDir: file.registries?.certsDir,
      policy: file.registries?.policy,
      insecure: file.registries?.insecure ?? defaults.registries.insecure,
      stallTimeout: file.registries?.stallTimeout,
      timeout: file.registries?.timeout,
    },
    keep: file.keep ?? defaults.keep,
    timeouts: {
      stall: file.timeouts?.stall ?? defaults.timeouts.stall,
      start: file.timeouts?.start ?? defaults.timeouts.start,
      retryMax: file.timeouts?.retryMax ?? defaults.timeouts.retryMax,
      engine: file.timeouts?.engine ?? defaults.timeouts.engine,
      soak: file.timeouts?.soak ?? defaults.timeouts.soak,
    },
    limits: {
      bundle: file.limits?.bundle ?? defaults.limits.bundle,
      bundleIndex: file.limits?.bundleIndex ?? defaults.limits.bundleIndex,
      layersMeta: file.limits?.layersMeta ?? defaults.limits.layersMeta,
      imageConfig: file.limits?.imageConfig ?? defaults.limits.imageConfig,
    },
    logLevel: file.logLevel ?? defaults.logLevel,
  };
}

/**
 * Reads and parses the config file at `path`. A missing file gives the defaults unless the operator named
 * it (`explicit`: --config or BERTH_CONFIG), where it is an error. Needs read permission on the file.
 */
export async function loadConfig(path: string, options: { explicit: boolean }): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      if (!options.explicit) return defaultConfig();
      throw new BerthError(
        "invalid_input",
        `config file ${path} does not exist; check --config or BERTH_CONFIG`,
        { cause: error },
      );
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new BerthError("invalid_input", `config file ${path}: permission denied`, { cause: error });
    }
    if (
      error instanceof Deno.errors.IsADirectory || (await Deno.stat(path).catch(() => undefined))?.isDirectory
    ) {
      throw new BerthError("invalid_input", `config file ${path} is a directory; expected a YAML file`, {
        cause: error,
      });
    }
    throw new BerthError("invalid_input", `config file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseConfig(text, path);
}
