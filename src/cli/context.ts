/** What every command gets: the global options resolved (flag > environment > default) and output helpers. */
import { UsageError } from "../util/errors.ts";
import { DEFAULT_STORE } from "../store/store.ts";
import { hostPlatform, parsePlatform, type Platform } from "../registry/platform.ts";
import { DEFAULT_CREDENTIALS_FILE, dockerConfigPath } from "../registry/credentials.ts";
import { DEFAULT_CERTS_DIR, DOCKER_CERTS_DIR } from "../registry/transport.ts";
import type { RegistryOptions } from "../registry/client.ts";
import { DEFAULT_DOCKER_HOST } from "../docker/engine.ts";
import type { OptionSpec, ParsedArgs } from "./args.ts";

/** Default directory of installed compose projects on a device. */
export const DEFAULT_COMPOSE_ROOT = "/var/lib/berth/apps";

export const GLOBAL_OPTIONS: OptionSpec[] = [
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

export interface Context {
  storePath: string;
  composeRoot: string;
  composeCommand?: string;
  dockerHost: string;
  json: boolean;
  platform: Platform;
  parallel: number;
  registry: Partial<RegistryOptions>;
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

/** Builds the context from parsed arguments and the environment. */
export function makeContext(args: ParsedArgs): Context {
  const json = args.options.json === true;
  const parallelText = option(args, "parallel") ?? Deno.env.get("BERTH_PARALLEL") ?? "3";
  const parallel = Number(parallelText);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) {
    throw new UsageError(`--parallel: "${parallelText}" is not a whole number from 1 to 64`);
  }
  let platform: Platform;
  try {
    platform = option(args, "platform") ? parsePlatform(option(args, "platform")!) : hostPlatform();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const credentials = option(args, "credentials") ?? Deno.env.get("BERTH_CREDENTIALS") ??
    DEFAULT_CREDENTIALS_FILE;
  const dockerConfig = dockerConfigPath();
  return {
    storePath: (option(args, "store") ?? Deno.env.get("BERTH_STORE") ?? DEFAULT_STORE).replace(
      /(.)\/+$/,
      "$1",
    ),
    composeRoot: (option(args, "compose-root") ?? Deno.env.get("BERTH_COMPOSE_ROOT") ?? DEFAULT_COMPOSE_ROOT)
      .replace(/(.)\/+$/, "$1"),
    composeCommand: option(args, "compose") ?? Deno.env.get("BERTH_COMPOSE"),
    dockerHost: option(args, "docker-host") ?? Deno.env.get("DOCKER_HOST") ?? DEFAULT_DOCKER_HOST,
    json,
    platform,
    parallel,
    registry: {
      insecureRegistries: (args.options["insecure-registry"] as string[] | undefined) ?? [],
      certsDirs: [option(args, "certs-dir") ?? DEFAULT_CERTS_DIR, DOCKER_CERTS_DIR],
      credentialFiles: [credentials, ...(dockerConfig ? [dockerConfig] : [])],
    },
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
