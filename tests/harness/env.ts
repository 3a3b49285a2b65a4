/**
 * What integration tests share: the services the runner started (from environment variables set by
 * run.ts), and a way to run berth as a separate process, as a user would.
 */
import { PERMISSION_FLAGS } from "../../build/permissions.ts";
import type { TestImages } from "./images.ts";

export interface TestEnv {
  /** "127.0.0.1:PORT" of the real docker-registry. */
  registry: string;
  /** "unix:///…/docker.sock" of the test's own dockerd. */
  dockerHost: string;
  images: TestImages;
  /** A scratch directory the runner removes afterwards. */
  tmp: string;
}

let cached: TestEnv | undefined;

/** The services, or undefined when the tests were not started by `deno task test` (those tests are ignored). */
export function testEnv(): TestEnv | undefined {
  if (cached) return cached;
  const registry = Deno.env.get("BERTH_TEST_REGISTRY");
  const dockerHost = Deno.env.get("BERTH_TEST_DOCKER_HOST");
  const imagesFile = Deno.env.get("BERTH_TEST_IMAGES");
  const tmp = Deno.env.get("BERTH_TEST_TMP");
  if (!registry || !dockerHost || !imagesFile || !tmp) return undefined;
  cached = { registry, dockerHost, images: JSON.parse(Deno.readTextFileSync(imagesFile)), tmp };
  return cached;
}

/** Ignore integration tests when the services are absent, and say why once. */
export const withServices = { ignore: testEnv() === undefined };
if (testEnv() === undefined) {
  console.warn(
    "integration tests skipped: run them with `deno task test`, which starts the registry and dockerd",
  );
}

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/**
 * What every berth child of a test has in its environment: plain output, and no update check of Deno's
 * own (a connection to an outside host that a proxy test would see as a CONNECT berth never made).
 */
export const CHILD_ENV = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };

/**
 * `deno run` as the compiled binary runs: its permissions, and the modules from the cache the test run
 * filled (without --cached-only Deno asks the npm registry again at run time, which a proxy test sees).
 */
export const RUN_ARGS: readonly string[] = ["run", "--cached-only", ...PERMISSION_FLAGS, "--quiet", MAIN];

export interface BerthRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run main.ts ARGS` to completion, with the permissions the compiled binary has. */
export async function runBerth(args: string[], env: Record<string, string> = {}): Promise<BerthRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...RUN_ARGS, ...args],
    env: { ...CHILD_ENV, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/**
 * berth as on a device: its store and compose root under `dir`, talking to the engine at `dockerHost`;
 * `extra` options go before each command's own arguments.
 */
export function deviceBerth(
  dir: string,
  dockerHost: string,
  extra: string[] = [],
): (...args: string[]) => Promise<BerthRun> {
  return (...args) =>
    runBerth([
      "--store",
      `${dir}/store`,
      "--compose-root",
      `${dir}/apps`,
      "--docker-host",
      dockerHost,
      ...extra,
      ...args,
    ]);
}

/** Starts berth without waiting (for kill -9 tests). */
export function spawnBerth(args: string[], env: Record<string, string> = {}): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [...RUN_ARGS, ...args],
    env: { ...CHILD_ENV, ...env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** This process's own scratch space, made when a test runs without the runner (which removes its own). */
let ownScratch: string | undefined;

function scratchBase(): string {
  const runner = testEnv()?.tmp;
  if (runner) return runner;
  if (ownScratch === undefined) {
    const dir = Deno.makeTempDirSync({ prefix: "berth-scratch-" });
    ownScratch = dir;
    // `deno test` dispatches unload after the last test, failed or not: nothing stays in the temp root.
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch (error) {
        console.error(`cleanup: ${dir}: ${error}`);
      }
    });
  }
  return ownScratch;
}

/** A fresh directory under the runner's scratch space, or this process's own, removed when it ends. */
export async function scratchDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ dir: scratchBase(), prefix });
}

/** Every file under `dir` with its size and mode, to prove a failed command left a store untouched. */
export async function snapshotTree(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = `${path}/${entry.name}`;
      const info = await Deno.lstat(full);
      if (entry.isDirectory) await walk(full);
      else {
        const content = entry.isFile && info.size < 65536 ? await Deno.readTextFile(full) : "";
        lines.push(`${full.slice(dir.length)} ${info.size} ${info.mode?.toString(8)} ${content}`);
      }
    }
  };
  await walk(dir);
  return lines.sort();
}
