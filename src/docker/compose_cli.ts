/**
 * Running compose: the v2 plugin (`docker compose`) when the docker CLI has it, else `docker-compose` v1,
 * or the command given with --compose (env BERTH_COMPOSE). Every call names the engine explicitly
 * (DOCKER_HOST), runs in the project directory with the app's project name, and reports which binary ran.
 *
 * What compose reads is named, not found: without `-f`, compose picks its file itself (v2 prefers
 * compose.yaml, both add docker-compose.override.yml, and both honour COMPOSE_FILE from the environment or
 * from the project's `.env`), so a bundle could swap the pinned file for one naming unpinned images. Every
 * call passes `-f <dir>/<file> --project-directory <dir> -p <project>` (the same global options in v1 1.29
 * and v2, given before the subcommand), which outrank COMPOSE_FILE, COMPOSE_PROJECT_NAME and the default
 * file names. The project's `.env` is still read, for interpolation; the app layer refuses COMPOSE_* and
 * DOCKER_* keys in it.
 *
 * What compose sees of the environment is written out too (see util/child_env.ts): it interpolates the
 * compose file from its own environment, so an inherited one would hand berth's secrets to any app that
 * names them. It gets PATH; HOME and DOCKER_CONFIG, where the docker CLI finds its config and its plugins
 * (compose v2 itself is one); DOCKER_HOST, the engine berth loads into; and the variables the operator
 * listed (the config's composeEnvironment). Nothing else: neither v1 nor v2 needs a locale, XDG_* or TMPDIR
 * to run up/stop/down, and proxies are the engine's business, not compose's.
 */
import { BerthError } from "../util/errors.ts";
import { childCommand, operatorVariables } from "../util/child_env.ts";

/** The compose found on this machine: how to run it, and its version. */
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

/** The environment of every compose child: what it needs to run and reach the engine, plus `passed`. */
function composeEnv(dockerHost: string, passed: readonly string[] = []): Record<string, string | undefined> {
  return {
    ...operatorVariables(passed),
    HOME: Deno.env.get("HOME"),
    DOCKER_CONFIG: Deno.env.get("DOCKER_CONFIG"),
    DOCKER_HOST: dockerHost,
  };
}

async function tryVersion(argv: string[], dockerHost: string): Promise<string | undefined> {
  try {
    const output = await childCommand(argv[0], {
      args: [...argv.slice(1), "version", "--short"],
      env: composeEnv(dockerHost),
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

/** One compose project and how to run compose for it. */
export interface ComposeProject {
  dockerHost: string;
  /** The project directory (absolute): relative paths in the file and `.env` are found there. */
  dir: string;
  /** The compose file's name in `dir`: the only file compose reads. */
  file: string;
  /** The project name, `-p`. */
  name: string;
  /** Variables of berth's environment compose may interpolate (the config's composeEnvironment). */
  passEnv?: readonly string[];
}

/**
 * Runs `compose -f <dir>/<file> --project-directory <dir> -p <name> <args>` in the project directory; a
 * non-zero exit is a `compose_failed` error with its output.
 */
export async function runCompose(compose: Compose, project: ComposeProject, args: string[]): Promise<string> {
  const output = await childCommand(compose.argv[0], {
    args: [
      ...compose.argv.slice(1),
      ...["-f", `${project.dir}/${project.file}`, "--project-directory", project.dir, "-p", project.name],
      ...args,
    ],
    cwd: project.dir,
    env: composeEnv(project.dockerHost, project.passEnv),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) {
    const tail = text.trim().split("\n").slice(-3).join(" / ");
    throw new BerthError(
      "compose_failed",
      `${compose.argv.join(" ")} ${
        args.join(" ")
      } failed for app ${project.name} (exit ${output.code}): ${tail}`,
    );
  }
  return text;
}
