/**
 * The shipped permissions stay in step with the code: every environment variable `src/` reads by name is
 * listed, a variable named at run time is read in one place only (the config's composeEnvironment and the
 * variables a published compose file names, which is why the environment permission is not narrowed), and
 * nothing grants everything. (That the flags are enough for every command is shown by the whole suite,
 * which runs berth with exactly these flags.)
 */
import assert from "node:assert/strict";
import { ENV_VARS, PERMISSION_FLAGS } from "../../build/permissions.ts";

const SRC = new URL("../../src", import.meta.url).pathname;

/** Every .ts file under src/, by path relative to src/, with its text. */
async function sources(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (path.endsWith(".ts")) files.set(path.slice(SRC.length + 1), await Deno.readTextFile(path));
    }
  };
  await walk(SRC);
  return files;
}

/**
 * Where a variable's name is not in the source: operatorVariables (composeEnvironment, publish's `${VAR}`),
 * and context.ts's
 * lookup, which is itself only called with literal names (scanned below as env("X")).
 */
const DYNAMIC_READERS = ["util/child_env.ts", "cli/context.ts"];

Deno.test("permissions: every variable src/ reads by name is listed, run-time names are read in one place only, and nothing grants all permissions", async () => {
  const read = new Set<string>();
  const dynamic: string[] = [];
  for (const [path, text] of await sources()) {
    // Deno.env.get("X"), and context.ts's env("X") lookup.
    for (const match of text.matchAll(/\benv(?:\.get)?\(\s*"([A-Z_][A-Z0-9_]*)"/g)) read.add(match[1]);
    // Deno.env.get(name) with a name that is not a literal, or the whole environment at once.
    if (/Deno\.env\.get\(\s*[^"\s]|Deno\.env\.toObject\(/.test(text)) dynamic.push(path);
  }
  assert.ok(read.has("BERTH_STORE") && read.has("DOCKER_CONFIG"), `the scan found ${[...read]}`);
  const missing = [...read].filter((name) => !ENV_VARS.includes(name));
  assert.deepEqual(missing, [], "add these to ENV_VARS in build/permissions.ts");
  assert.deepEqual(
    dynamic.sort(),
    [...DYNAMIC_READERS].sort(),
    "variables read by a name known only at run time",
  );
  for (const flag of ["-A", "--allow-all", "--allow-ffi", "--allow-sys"]) {
    assert.ok(!PERMISSION_FLAGS.includes(flag), `${flag} is broader than berth needs`);
  }
  // The one broad grant, for composeEnvironment and publish's `${VAR}` (see build/permissions.ts).
  assert.ok(PERMISSION_FLAGS.includes("--allow-env"));
});
