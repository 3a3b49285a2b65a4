/**
 * The shipped permissions stay in step with the code: every environment variable `src/` reads is allowed,
 * and nothing grants everything. (That the flags are enough for every command is shown by the whole suite,
 * which runs berth with exactly these flags.)
 */
import assert from "node:assert/strict";
import { ENV_VARS, PERMISSION_FLAGS } from "../../build/permissions.ts";

Deno.test("permissions: every environment variable src/ reads is allowed, and nothing grants everything", async () => {
  const read = new Set<string>();
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (path.endsWith(".ts")) {
        // Deno.env.get("X"), and context.ts's env("X") lookup.
        const text = await Deno.readTextFile(path);
        for (const match of text.matchAll(/\benv(?:\.get)?\(\s*"([A-Z_][A-Z0-9_]*)"/g)) read.add(match[1]);
      }
    }
  };
  await walk(new URL("../../src", import.meta.url).pathname);
  assert.ok(read.has("BERTH_STORE") && read.has("DOCKER_CONFIG"), `the scan found ${[...read]}`);
  const missing = [...read].filter((name) => !ENV_VARS.includes(name));
  assert.deepEqual(missing, [], "add these to ENV_VARS in build/permissions.ts");
  for (const flag of ["-A", "--allow-all", "--allow-ffi", "--allow-sys", "--allow-env"]) {
    assert.ok(!PERMISSION_FLAGS.includes(flag), `${flag} is broader than berth needs`);
  }
});
