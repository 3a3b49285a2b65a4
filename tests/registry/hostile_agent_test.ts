/**
 * One app's stuck registry must not stop the agent: apps are reconciled one after another, so before
 * every registry read had a stall timeout and every operation a deadline, an app whose registry answered
 * and then never sent a byte held the whole loop, and no other app was ever installed.
 */
import assert from "node:assert/strict";
import { withServices } from "../harness/env.ts";
import { startHostileRegistry } from "../harness/hostile_registry.ts";
import { inScene, publish, runningServices, status, waitFor, writeConfig } from "../agent/agent_harness.ts";

Deno.test({
  name: "agent: an app whose registry stalls every body fails, and the next app is installed and running",
  ...withServices,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const hostile = await startHostileRegistry();
      try {
        // Headers at once, then not a byte: manifests, blobs, everything.
        hostile.route("*", /^\/v2\/.+/, (request) =>
          new Response(request.method === "HEAD" ? null : hostile.stallingBody("{"), {
            headers: {
              "Content-Type": "application/vnd.oci.image.manifest.v1+json",
              "Content-Length": "900",
            },
          }));
        const stuck = `${hostile.host}/evil/stuck:1`;
        const good = `${proxy.host}/fleet/good:1`;
        await publish(good, { web: via(env.images.appA.ref) });
        // The stuck app comes first: the agent reaches the good one only past it. Short registry timeouts
        // keep the test quick; with the defaults the stuck app holds the loop for at most 90 s a pass.
        await writeConfig(device, [stuck, good], ["registries: { stallTimeout: 2s, timeout: 8s }"]);
        const agent = start();
        const started = Date.now();
        const apps = await waitFor(
          "the good app running while the stuck one has failed",
          async () => {
            const current = await status(device);
            const byName = Object.fromEntries((current?.apps ?? []).map((app) => [app.name, app]));
            return byName.good?.state === "running" && byName.stuck ? byName : undefined;
          },
          60_000,
          500,
          agent.log,
        );
        const seconds = (Date.now() - started) / 1000;
        console.log(`    good app running after ${seconds.toFixed(1)} s`);
        assert.deepEqual(Object.keys(await runningServices(device, "good")), ["web"]);
        assert.equal(apps.stuck.state, "failed", JSON.stringify(apps.stuck));
        assert.equal(apps.stuck.reason?.code, "registry_unreachable", JSON.stringify(apps.stuck.reason));
        assert.ok(hostile.count("GET", /\/manifests\//) >= 1, "the stuck registry was asked");
      } finally {
        await hostile.close();
      }
    }),
});
