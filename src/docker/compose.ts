/**
 * Running compose: the v2 plugin (`docker compose`) when the docker CLI has it, else `docker-compose` v1,
 * or the command given with --compose (env BERTH_COMPOSE). Every call names the engine explicitly
 * (DOCKER_HOST), runs in the project directory with the app's project name, and reports which binary ran.
 */
import { BerthError } from "../util/errors.ts";

export interface Compose {
  /** The command line prefix, e.g. ["/usr/bin/docker", "compose"]. */
  argv: string[];
  /** What `version --short` said. */
  version: string;
}

/** The absolute path of `name` on PATH, so messages say exactly which binary runs. */
export function which(name: string): string | undefined {
  if (name.includes("/")) return name;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const path = `${dir || "."}/${name}`;
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function tryVersion(argv: string[], dockerHost: string): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(argv[0], {
      args: [...argv.slice(1), "version", "--short"],
      env: { DOCKER_HOST: dockerHost },
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    return output.success ? new TextDecoder().decode(output.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** Finds the compose to run: `override` (a command line, split on spaces), else v2, else v1. */
export async function findCompose(dockerHost: string, override?: string): Promise<Compose> {
  const candidates: string[][] = [];
  if (override) candidates.push(override.split(/\s+/).filter(Boolean));
  else {
    const docker = which("docker");
    if (docker) candidates.push([docker, "compose"]);
    const v1 = which("docker-compose");
    if (v1) candidates.push([v1]);
  }
  for (const argv of candidates) {
    const resolved = [which(argv[0]) ?? argv[0], ...argv.slice(1)];
    const version = await tryVersion(resolved, dockerHost);
    if (version) return { argv: resolved, version };
  }
  throw new BerthError(
    "invalid_input",
    override
      ? `compose command "${override}" does not run ('${override} version' failed)`
      : "no docker compose found: install the compose v2 plugin or docker-compose, or name one with --compose",
  );
}

/** Runs `compose -p project <args>` in `projectDir`; a non-zero exit is a `compose_failed` error with its output. */
export async function runCompose(
  compose: Compose,
  dockerHost: string,
  projectDir: string,
  project: string,
  args: string[],
): Promise<string> {
  const output = await new Deno.Command(compose.argv[0], {
    args: [...compose.argv.slice(1), "-p", project, ...args],
    cwd: projectDir,
    env: { DOCKER_HOST: dockerHost },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) {
    const tail = text.trim().split("\n").slice(-3).join(" / ");
    throw new BerthError(
      "compose_failed",
      `${compose.argv.join(" ")} ${args.join(" ")} failed for app ${project} (exit ${output.code}): ${tail}`,
    );
  }
  return text;
}
