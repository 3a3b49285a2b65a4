/**
 * Aborting a blob read must not depend on the garbage collector. Deno's fetch forwards an abort to a
 * response body only through the Request object's own signal, which the caller's signal holds weakly:
 * once the Request was collected, aborting did nothing and the read ran to the end (SIGTERM during a pull
 * then finished the pull). The child forces that collection before it aborts.
 */
import assert from "node:assert/strict";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { testEnv, withServices } from "../harness/env.ts";

const MiB = 1024 * 1024;
const CHILD = new URL("./fixtures/abort_blob_read.ts", import.meta.url).pathname;

Deno.test({
  name: "aborting a blob read ends it at once, even after a garbage collection",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { big } = env.images;
    const layer = big.layers.reduce((a, b) => (a.size > b.size ? a : b));
    const proxy = await startFaultProxy(env.registry);
    try {
      // Slow enough that reading the 32 MiB layer to its end would take seconds.
      proxy.setThrottle(4 * MiB);
      const started = Date.now();
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          "--v8-flags=--expose-gc",
          CHILD,
          big.ref.replace(env.registry, proxy.host),
          layer.digest,
          String(layer.size),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr);
      const result = JSON.parse(new TextDecoder().decode(output.stdout));
      assert.equal(result.ended, "aborted", JSON.stringify(result));
      assert.equal(result.reason, "interrupted");
      assert.equal(result.bytesAfter, 0, "no chunk is yielded after the abort");
      assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
    } finally {
      await proxy.close();
    }
  },
});
