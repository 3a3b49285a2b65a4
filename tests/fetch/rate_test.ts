/** The config's rateLimit holds a whole pull (all parallel blobs together) to its rate, loosely measured. */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

Deno.test({
  name: "rateLimit: a 41 MiB pull at 16 MiB/s takes about 2.5 s, not a fraction of it",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("rate-");
    const pullAt = async (rate: string | undefined) => {
      const label = rate ? "limited" : "free";
      const config = `${dir}/config-${label}.yml`;
      await Deno.writeTextFile(config, rate ? `rateLimit: ${rate}\n` : "{}\n");
      const started = performance.now();
      const pulled = await runBerth([
        "--config",
        config,
        "--store",
        `${dir}/store-${label}`,
        "--parallel",
        "3",
        "pull",
        env.images.big.ref,
      ]);
      assert.equal(pulled.code, 0, pulled.stderr);
      return (performance.now() - started) / 1000;
    };
    const free = await pullAt(undefined);
    const limited = await pullAt("16MiB/s");
    const bytes = env.images.big.layers.reduce((sum, layer) => sum + layer.size, 0);
    const expected = bytes / (16 * 1024 * 1024);
    // Never faster than the limit allows (less one burst); within 3× of it on a busy machine.
    assert.ok(
      limited >= expected * 0.8,
      `limited pull took ${limited.toFixed(2)} s, expected ≈ ${expected.toFixed(2)} s`,
    );
    assert.ok(
      limited <= expected * 3 + free,
      `limited pull took ${limited.toFixed(2)} s, expected ≈ ${expected.toFixed(2)} s`,
    );
    console.log(
      `  unlimited ${free.toFixed(2)} s, 16 MiB/s ${limited.toFixed(2)} s (expected ≈ ${
        expected.toFixed(2)
      } s)`,
    );
  },
});
