/**
 * App commands check what the store alone can answer before they connect to the engine: an app that is
 * not installed is said to be so even when the engine is down. No services needed.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir } from "../harness/env.ts";

Deno.test("run, stop and rm of an app that is not installed say so, even with no engine to reach", async () => {
  const dir = await scratchDir("no-engine-");
  const berth = (...args: string[]) =>
    runBerth([
      "--store",
      `${dir}/store`,
      "--compose-root",
      `${dir}/apps`,
      "--docker-host",
      `unix://${dir}/no-docker.sock`,
      ...args,
    ]);
  for (const command of ["run", "stop", "rm"]) {
    const result = await berth(command, "nosuchapp");
    assert.equal(result.code, 1, `${command}: ${result.stderr}`);
    assert.equal(
      result.stderr.trim(),
      "berth: app nosuchapp is not installed (no such app); install it with 'berth install <ref>'",
      command,
    );
  }
  // What does need the engine still names it.
  const restore = await berth("restore");
  assert.equal(restore.code, 1);
  assert.match(restore.stderr.trim(), /no-docker\.sock/);
  await Deno.remove(dir, { recursive: true });
});
