/**
 * App commands check what the store alone can answer before they connect to the engine: an app that is
 * not installed (or, for install, not fetched) is said to be so even when the engine is down. No services
 * needed.
 */
import assert from "node:assert/strict";
import { deviceBerth, scratchDir } from "../harness/env.ts";
import { statIfExists } from "../../src/util/fs.ts";

Deno.test("run, stop, rm and install of an app that is not there say so, even with no engine to reach", async () => {
  const dir = await scratchDir("no-engine-");
  const berth = deviceBerth(dir, `unix://${dir}/no-docker.sock`);
  for (const command of ["run", "stop", "rm"]) {
    const result = await berth(command, "nosuchapp");
    assert.equal(result.code, 1, `${command}: ${result.stderr}`);
    assert.equal(
      result.stderr.trim(),
      "berth: app nosuchapp is not installed (no such app); install it with 'berth install <ref>'",
      command,
    );
  }
  // install of an app that is not fetched says so, and how to fetch it, before it looks for the engine.
  const byName = await berth("install", "shop");
  assert.equal(byName.code, 1, byName.stderr);
  assert.equal(
    byName.stderr.trim(),
    `berth: app shop is not in store ${dir}/store (no version of it was fetched); ` +
      "fetch it first with 'berth pull REGISTRY/REPOSITORY/shop:TAG'",
  );
  const byRef = await berth("install", "registry.example/factory/shop:v2");
  assert.equal(byRef.code, 1, byRef.stderr);
  assert.equal(
    byRef.stderr.trim(),
    `berth: app registry.example/factory/shop:v2 is not in store ${dir}/store; ` +
      "fetch it first with 'berth pull registry.example/factory/shop:v2'",
  );
  assert.equal(await statIfExists(`${dir}/store`), undefined, "a refused command creates no store");
  // What does need the engine still names it.
  const restore = await berth("restore");
  assert.equal(restore.code, 1);
  assert.match(restore.stderr.trim(), /no-docker\.sock/);
  await Deno.remove(dir, { recursive: true });
});
