/**
 * `deno task compile [--target x86_64|aarch64]`: one berth binary per CPU architecture, into
 * `build/out/berth-<arch>`, offline (from the lock file and Deno's cache) as an offline Yocto build needs.
 *
 * `deno compile` joins berth to a `denort` runtime built for the target, which Deno would download from its
 * site. Here it never downloads: each target's runtime comes from `DENORT_BIN_X86_64` / `DENORT_BIN_AARCH64`
 * (the path of an unpacked `denort`, handed to deno as `DENORT_BIN`), or from Deno's own download cache
 * (`$DENO_DIR/dl/release/v<version>/denort-<target>.zip`); when neither has it, the build stops and says
 * which file to get.
 */
import { PERMISSION_FLAGS } from "./permissions.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** The targets, by the architecture name `uname -m` and Yocto's TARGET_ARCH use. */
export const TARGETS: Record<string, { triple: string; envVar: string }> = {
  x86_64: { triple: "x86_64-unknown-linux-gnu", envVar: "DENORT_BIN_X86_64" },
  aarch64: { triple: "aarch64-unknown-linux-gnu", envVar: "DENORT_BIN_AARCH64" },
};

/** Where the binary for `arch` goes. */
export const outputPath = (arch: string) => `${ROOT}build/out/berth-${arch}`;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Deno's cache directory, as `deno info` reports it. */
async function denoDir(): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
    .output();
  return (JSON.parse(new TextDecoder().decode(output.stdout)) as { denoDir: string }).denoDir;
}

/**
 * The runtime for `arch`: `{ env }` to give deno, or an error message naming what is missing.
 */
export async function runtimeFor(
  arch: string,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<{ env: Record<string, string>; source: string } | { missing: string }> {
  const { triple, envVar } = TARGETS[arch];
  const given = env(envVar);
  if (given) {
    if (!(await exists(given))) return { missing: `${envVar}=${given}: no such file` };
    return { env: { DENORT_BIN: given }, source: `${envVar} (${given})` };
  }
  const version = Deno.version.deno;
  const cached = `${await denoDir()}/dl/release/v${version}/denort-${triple}.zip`;
  if (await exists(cached)) return { env: {}, source: `Deno's download cache (${cached})` };
  return {
    missing: `no denort runtime for ${triple}: set ${envVar} to an unpacked denort of Deno ${version} ` +
      `(from denort-${triple}.zip, https://dl.deno.land/release/v${version}/denort-${triple}.zip), ` +
      `or put that zip at ${cached}`,
  };
}

/** The `deno compile` arguments for `arch` (shared with the tests that check them). */
export function compileArgs(arch: string): string[] {
  return [
    "compile",
    "--frozen",
    "--cached-only",
    ...PERMISSION_FLAGS,
    "--target",
    TARGETS[arch].triple,
    "--output",
    outputPath(arch),
    `${ROOT}main.ts`,
  ];
}

async function main(args: string[]): Promise<number> {
  let arches = Object.keys(TARGETS);
  if (args.length > 0) {
    if (args.length !== 2 || args[0] !== "--target" || !(args[1] in TARGETS)) {
      console.error(`usage: deno task compile [--target ${Object.keys(TARGETS).join("|")}]`);
      return 2;
    }
    arches = [args[1]];
  }
  if (Deno.env.get("DENORT_BIN")) {
    // One runtime cannot serve two architectures: each target takes its own variable.
    console.error(
      `compile: DENORT_BIN is set; unset it and use ${
        Object.values(TARGETS).map((t) => t.envVar).join(" / ")
      }`,
    );
    return 2;
  }
  // Every runtime is looked for before anything is built: a half-done build helps nobody.
  const runtimes = new Map<string, { env: Record<string, string>; source: string }>();
  const missing: string[] = [];
  for (const arch of arches) {
    const runtime = await runtimeFor(arch);
    if ("missing" in runtime) missing.push(runtime.missing);
    else runtimes.set(arch, runtime);
  }
  if (missing.length > 0) {
    for (const line of missing) console.error(`compile: ${line}`);
    return 1;
  }
  await Deno.mkdir(`${ROOT}build/out`, { recursive: true });
  for (const arch of arches) {
    const runtime = runtimes.get(arch)!;
    console.error(`compile: berth-${arch} with the runtime from ${runtime.source}`);
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: compileArgs(arch),
      env: runtime.env,
      cwd: ROOT,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) {
      console.error(`compile: deno compile for ${arch} failed (exit ${code})`);
      return 1;
    }
    console.error(`compile: wrote ${outputPath(arch)}`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
