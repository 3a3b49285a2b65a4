/**
 * What the hostile-registry tests share: `berth pull` run as its own process against a registry that lies,
 * stalls and floods, and the contract every refusal is held to.
 */
import assert from "node:assert/strict";
import { type BerthRun, CHILD_ENV, RUN_ARGS, runBerth, scratchDir } from "../harness/env.ts";
import { failureLine } from "../harness/secure_registry.ts";
import { type HostileRegistry, startHostileRegistry } from "../harness/hostile_registry.ts";

export const MiB = 1024 * 1024;
/** What a flood sends: far more than any cap, and more than the RSS bound. */
export const FLOOD_BYTES = 400 * MiB;
/** Peak RSS (KiB) a pull may reach whatever the registry sends; berth's own bound is ~120 MB. */
export const MAX_RSS_KIB = 150 * 1024;
/** Short timeouts for the tests that are not about the defaults: seconds. */
export const FAST_CONFIG = "registries:\n  stallTimeout: 1s\n  timeout: 6s\n";

export interface Pull {
  run: BerthRun;
  seconds: number;
  /** Peak RSS in KiB, when measured. */
  rssKiB?: number;
  dir: string;
}

/** `berth --json pull ref` with its own store; `measure` runs it under GNU time for its peak RSS. */
export async function pull(ref: string, options: { config?: string; measure?: boolean } = {}): Promise<Pull> {
  const dir = await scratchDir("hostile-");
  await Deno.mkdir(`${dir}/docker-config`);
  const args = ["--store", `${dir}/store`, "--json"];
  if (options.config !== undefined) {
    await Deno.writeTextFile(`${dir}/config.yml`, options.config);
    args.push("--config", `${dir}/config.yml`);
  }
  args.push("pull", ref);
  const env = { DOCKER_CONFIG: `${dir}/docker-config`, ...CHILD_ENV };
  const started = performance.now();
  if (!options.measure) {
    const run = await runBerth(args, env);
    return { run, seconds: (performance.now() - started) / 1000, dir };
  }
  const rssFile = await Deno.makeTempFile({ dir: await scratchDir("rss-") });
  const output = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", "-o", rssFile, Deno.execPath(), ...RUN_ARGS, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const run = {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
  const rssKiB = Number((await Deno.readTextFile(rssFile)).trim().split("\n").pop());
  console.log(`    peak RSS ${(rssKiB / 1024).toFixed(1)} MiB`);
  return { run, seconds: (performance.now() - started) / 1000, rssKiB, dir };
}

/**
 * The contract of every hostile case: exit 1, one line naming `ref` and matching `what`, no control
 * characters in it, nothing but the store (and the test's own files) in the directory, fsck clean.
 */
export async function assertRefused(result: Pull, ref: string, what: RegExp): Promise<string> {
  const line = failureLine(result.run);
  assert.ok(line.includes(ref), `the line names ${ref}: ${line}`);
  assert.match(line, what);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f]/, "no control characters reach the terminal");
  assert.ok(line.length < 1000, `one short line, not ${line.length} characters`);
  const names: string[] = [];
  for await (const entry of Deno.readDir(result.dir)) names.push(entry.name);
  assert.deepEqual(
    names.filter((name) => !["store", "docker-config", "config.yml"].includes(name)),
    [],
    "nothing written outside the store",
  );
  const fsck = await runBerth(["--store", `${result.dir}/store`, "fsck"]);
  assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
  if (result.rssKiB !== undefined) {
    assert.ok(result.rssKiB < MAX_RSS_KIB, `peak RSS ${result.rssKiB} KiB, over ${MAX_RSS_KIB} KiB`);
  }
  return line;
}

/** Runs `fn` with a fresh hostile registry serving a valid image at evil/app:1, closed afterwards. */
export function hostile(
  name: string,
  fn: (registry: HostileRegistry, image: Awaited<ReturnType<HostileRegistry["serveImage"]>>) => Promise<void>,
) {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const registry = await startHostileRegistry();
      try {
        await fn(registry, await registry.serveImage("evil/app", "1"));
      } finally {
        await registry.close();
      }
    },
  });
}

export const manifestPath = (image: { repo: string }) => new RegExp(`^/v2/${image.repo}/manifests/`);
export const blobPath = (image: { repo: string }, digest: string) => `/v2/${image.repo}/blobs/${digest}`;
