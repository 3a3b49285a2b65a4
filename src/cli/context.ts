/**
 * What every command gets: the config file read and the global options resolved (flag > environment >
 * config file > default, for every setting), and output helpers.
 */
import { UsageError } from "../util/errors.ts";
import { hostPlatform, parsePlatform, type Platform } from "../oci/platform.ts";
import { dockerConfigPath } from "../registry/credentials.ts";
import { DOCKER_CERTS_DIR } from "../registry/transport.ts";
import type { RegistryOptions } from "../registry/options.ts";
import type { Policy } from "../trust/policy.ts";
import {
  DEFAULT_CERTS_DIR,
  DEFAULT_COMPOSE_ROOT,
  DEFAULT_CONFIG_FILE,
  DEFAULT_CREDENTIALS_FILE,
  DEFAULT_DOCKER_HOST,
  DEFAULT_POLICY_FILE,
  DEFAULT_STORE,
  defaultConfig,
} from "../config/defaults.ts";
import type { Config } from "../config/config.ts";
import { statIfExists } from "../util/fs.ts";
import type { OptionSpec, ParsedArgs } from "./args.ts";

/** The options every command accepts, before or after the command name. */
export const GLOBAL_OPTIONS: OptionSpec[] = [
  {
    name: "--config",
    value: "FILE",
    help: `config file, YAML (env BERTH_CONFIG; default ${DEFAULT_CONFIG_FILE}, which may be absent)`,
  },
  { name: "--store", value: "DIR", help: `berth's store (env BERTH_STORE; default ${DEFAULT_STORE})` },
  { name: "--json", help: "machine-readable output on stdout" },
  { name: "--platform", value: "OS/ARCH[/VARIANT]", help: "platform to pull (default: this host's)" },
  {
    name: "--insecure-registry",
    value: "HOST[:PORT]",
    repeat: true,
    help: "allow plain HTTP to this registry (loopback hosts always may)",
  },
  { name: "--parallel", value: "N", help: "blobs downloaded at once (env BERTH_PARALLEL; default 3)" },
  {
    name: "--credentials",
    value: "FILE",
    help:
      `registry credentials, docker config.json format (env BERTH_CREDENTIALS; default ${DEFAULT_CREDENTIALS_FILE})`,
  },
  {
    name: "--certs-dir",
    value: "DIR",
    help:
      `extra CAs and client certificates per registry host (default ${DEFAULT_CERTS_DIR}, then ${DOCKER_CERTS_DIR})`,
  },
  {
    name: "--policy",
    value: "FILE",
    help: `signature policy, containers-policy.json(5) (default ${DEFAULT_POLICY_FILE} when it exists)`,
  },
  {
    name: "--docker-host",
    value: "URL",
    help: `docker engine to load into (env DOCKER_HOST; default ${DEFAULT_DOCKER_HOST})`,
  },
  {
    name: "--compose-root",
    value: "DIR",
    help: `where installed compose projects live (env BERTH_COMPOSE_ROOT; default ${DEFAULT_COMPOSE_ROOT})`,
  },
  {
    name: "--compose",
    value: "COMMAND",
    help:
      'compose to run, e.g. "docker-compose" (env BERTH_COMPOSE; default: docker compose, else docker-compose)',
  },
  { name: "--help", short: "-h", help: "show help" },
];

/** What a command runs with: the settings after precedence (flag > environment > file > default) and output. */
export interface Context {
  /** The config file as read (defaults when there is none); the settings below already include it. */
  config: Config;
  /** The config file's path, whether or not it exists. */
  configPath: string;
  storePath: string;
  composeRoot: string;
  composeCommand?: string;
  dockerHost: string;
  json: boolean;
  platform: Platform;
  parallel: number;
  registry: Partial<RegistryOptions>;
  /** The signature policy file: named (--policy, registries.policy), else the default one when it exists. */
  policyFile?: string;
  args: ParsedArgs;
  /** Human-readable output (stdout); suppressed with --json. */
  say(line: string): void;
  /** Progress and warnings (stderr). */
  note(line: string): void;
  /** Machine-readable result (stdout, one JSON document). */
  emit(value: unknown): void;
}

function option(args: ParsedArgs, key: string): string | undefined {
  const value = args.options[key];
  return typeof value === "string" ? value : undefined;
}

const encoder = new TextEncoder();

/** The environment as makeContext sees it; tests pass their own. */
export type Environment = (name: string) => string | undefined;

/**
 * Reads the config file, unless `readConfig` is false (`version`): one a user named that is missing is an
 * error; the default one may be absent. A file that exists costs the yaml and zod modules; none does not.
 */
async function readConfig(
  args: ParsedArgs,
  env: Environment,
  readConfig: boolean,
): Promise<{ config: Config; configPath: string }> {
  // An empty BERTH_CONFIG (a unit file's `Environment=BERTH_CONFIG=`) means "not set", as unset would.
  const named = option(args, "config") ?? (env("BERTH_CONFIG") || undefined);
  const configPath = named ?? DEFAULT_CONFIG_FILE;
  // A default file that cannot even be stat'ed is read anyway, so that loadConfig says why.
  const present = await statIfExists(configPath).catch(() => true);
  if (!readConfig || (named === undefined && !present)) {
    return { config: defaultConfig(), configPath };
  }
  const { loadConfig } = await import("../config/config.ts");
  return { config: await loadConfig(configPath, { explicit: named !== undefined }), configPath };
}

/**
 * Builds the context from parsed arguments, the environment and the config file. Throws a BerthError
 * (exit 1) for a broken config file and a UsageError (exit 2) for a bad option, before any command touches
 * the store, the engine or the network.
 */
export async function makeContext(
  args: ParsedArgs,
  options: { readConfig?: boolean; env?: Environment } = {},
): Promise<Context> {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const { config, configPath } = await readConfig(args, env, options.readConfig ?? true);
  const json = args.options.json === true;
  const parallelText = option(args, "parallel") ?? env("BERTH_PARALLEL") ?? String(config.parallel ?? 3);
  const parallel = Number(parallelText);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) {
    throw new UsageError(`--parallel: "${parallelText}" is not a whole number from 1 to 64`);
  }
  let platform: Platform;
  try {
    const platformText = option(args, "platform") ?? config.platform;
    platform = platformText ? parsePlatform(platformText) : hostPlatform();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const credentials = option(args, "credentials") ?? env("BERTH_CREDENTIALS") ??
    config.registries.credentials ?? DEFAULT_CREDENTIALS_FILE;
  const dockerConfig = dockerConfigPath();
  const insecureFlags = (args.options["insecure-registry"] as string[] | undefined) ?? [];
  return {
    config,
    configPath,
    storePath: (option(args, "store") ?? env("BERTH_STORE") ?? config.store ?? DEFAULT_STORE).replace(
      /(.)\/+$/,
      "$1",
    ),
    composeRoot: (option(args, "compose-root") ?? env("BERTH_COMPOSE_ROOT") ?? config.composeRoot ??
      DEFAULT_COMPOSE_ROOT)
      .replace(/(.)\/+$/, "$1"),
    composeCommand: option(args, "compose") ?? env("BERTH_COMPOSE") ?? config.compose,
    dockerHost: option(args, "docker-host") ?? env("DOCKER_HOST") ?? config.docker.host ??
      DEFAULT_DOCKER_HOST,
    json,
    platform,
    parallel,
    registry: {
      insecureRegistries: [...new Set([...config.registries.insecure, ...insecureFlags])],
      certsDirs: [
        option(args, "certs-dir") ?? config.registries.certsDir ?? DEFAULT_CERTS_DIR,
        DOCKER_CERTS_DIR,
      ],
      credentialFiles: [credentials, ...(dockerConfig ? [dockerConfig] : [])],
      ...(config.registries.stallTimeout ? { stallTimeoutMs: config.registries.stallTimeout * 1000 } : {}),
      ...(config.registries.timeout ? { deadlineMs: config.registries.timeout * 1000 } : {}),
    },
    policyFile: option(args, "policy") ?? config.registries.policy ??
      (await statIfExists(DEFAULT_POLICY_FILE).catch(() => true) ? DEFAULT_POLICY_FILE : undefined),
    args,
    say: (line) => {
      if (!json) Deno.stdout.writeSync(encoder.encode(line + "\n"));
    },
    note: (line) => {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    },
    emit: (value) => {
      Deno.stdout.writeSync(encoder.encode(JSON.stringify(value, null, 2) + "\n"));
    },
  };
}

/**
 * The one rule for a store that does not exist: it holds nothing, since only a successful pull creates it.
 * Commands that report on it (ls, fsck, prune) treat it as empty and exit as they would for an empty store,
 * after this line on stderr — a mistyped --store is then seen, not mistaken for an empty device.
 */
export function noteMissingStore(context: Context): void {
  context.note(`store ${context.storePath} does not exist yet (nothing was pulled into it)`);
}

/**
 * The signature policy the context names, read and checked (its keys too); undefined when there is none.
 * Loaded on demand: commands that never judge a signature do not load the trust modules.
 */
export function contextPolicy(context: Context): Promise<Policy | undefined> {
  let loaded = policies.get(context);
  if (!loaded) {
    const file = context.policyFile;
    loaded = file
      ? import("../trust/policy.ts").then(({ loadPolicy }) => loadPolicy(file))
      : Promise.resolve(undefined);
    policies.set(context, loaded);
  }
  return loaded;
}

const policies = new WeakMap<Context, Promise<Policy | undefined>>();

/** "12.3 MiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** "sha256:0123456789ab" — enough to tell blobs apart in human output. */
export function shortDigest(digest: string): string {
  return digest.slice(0, "sha256:".length + 12);
}
