/**
 * `deno task compile` where no denort runtime exists (as where berth is developed): it stops before building
 * anything, naming the variable to set and the file to get; its arguments are checked. It never downloads.
 */
import assert from "node:assert/strict";
import { compileArgs, outputPath, TARGETS } from "../../build/compile.ts";
import { PERMISSION_FLAGS } from "../../build/permissions.ts";

const COMPILE = new URL("../../build/compile.ts", import.meta.url).pathname;

async function compile(args: string[], env: Record<string, string>) {
  const emptyCache = await Deno.makeTempDir({ prefix: "deno-dir-" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", COMPILE, ...args],
      // A DENO_DIR without a download cache: the build may look there, and must find nothing.
      env: { DENO_DIR: emptyCache, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", ...env },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
  } finally {
    await Deno.remove(emptyCache, { recursive: true });
  }
}

Deno.test("compile without a runtime names the variable and the zip for each target, and builds nothing", async () => {
  const { code, stderr } = await compile([], {});
  assert.equal(code, 1, stderr);
  for (const [arch, { triple, envVar }] of Object.entries(TARGETS)) {
    assert.match(stderr, new RegExp(`set ${envVar} .* denort-${triple}\\.zip`));
    assert.match(
      stderr,
      new RegExp(`https://dl\\.deno\\.land/release/v${Deno.version.deno}/denort-${triple}\\.zip`),
    );
    await assert.rejects(Deno.stat(outputPath(arch)), Deno.errors.NotFound);
  }
});

Deno.test("compile: a runtime variable pointing nowhere, DENORT_BIN itself, an unknown target", async () => {
  const nowhere = await compile(["--target", "aarch64"], { DENORT_BIN_AARCH64: "/nonexistent/denort" });
  assert.equal(nowhere.code, 1);
  assert.match(nowhere.stderr, /DENORT_BIN_AARCH64=\/nonexistent\/denort: no such file/);
  const shared = await compile([], { DENORT_BIN: "/usr/bin/true" });
  assert.equal(shared.code, 2);
  assert.match(shared.stderr, /DENORT_BIN is set; unset it and use DENORT_BIN_X86_64 \/ DENORT_BIN_AARCH64/);
  const unknown = await compile(["--target", "mips"], {});
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /usage: deno task compile \[--target x86_64\|aarch64\]/);
});

Deno.test("compile arguments: offline, from the lock file, the shared permissions, one output per arch", () => {
  const args = compileArgs("aarch64");
  for (const flag of ["--frozen", "--cached-only", ...PERMISSION_FLAGS]) assert.ok(args.includes(flag), flag);
  assert.ok(!args.includes("-A") && !args.includes("--allow-all"));
  assert.deepEqual(args.slice(args.indexOf("--target"), args.indexOf("--target") + 2), [
    "--target",
    "aarch64-unknown-linux-gnu",
  ]);
  assert.match(args[args.indexOf("--output") + 1], /build\/out\/berth-aarch64$/);
});
