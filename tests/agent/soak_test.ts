/**
 * Health that fits real apps: a one-shot service (`restart: "no"`) that exits 0 is done, not failed; a
 * service that restarts during the soak fails the update, which is rolled back to the version before.
 * Real registry, the device's own dockerd, real compose.
 */
import assert from "node:assert/strict";
import { withServices } from "../harness/env.ts";
import {
  inScene,
  publish,
  runningServices,
  waitFor,
  waitForApp,
  waitForPasses,
  writeConfig,
} from "./agent_harness.ts";

Deno.test({
  name: "soak: a one-shot that exits 0 is done; a service restarting during the soak is rolled back",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const { appA, appB } = env.images;
      const ref = `${proxy.host}/fleet/jobs:stable`;
      const v1 = await publish(ref, { web: via(appA.ref), migrate: via(appA.ref) }, { oneShot: "migrate" });
      await writeConfig(device, [ref]);
      const agent = start();
      await waitForApp(device, "v1 running", (app) =>
        app.state === "running" && app.currentDigest === v1.digest, agent);
      // The one-shot is not started again at every poll: its work is done.
      const log = () =>
        agent.log().split("\n").filter((line) =>
          line.includes("started app jobs")
        ).length;
      const startsBefore = log();
      await waitForPasses(device, 3, agent);
      assert.equal(log(), startsBefore, "the finished one-shot is left alone");

      const v2 = await publish(ref, { web: via(appB.ref), migrate: via(appA.ref) }, {
        oneShot: "migrate",
        crashLoop: "web",
      });
      const failed = await waitForApp(
        device,
        "v2 failed and rolled back",
        (app) => app.state === "failed" && app.desiredDigest === v2.digest ? app : undefined,
        agent,
      );
      assert.equal(failed.reason?.code, "compose_failed");
      // Seen between its exit and its restart, or after: either way the soak failed on web.
      assert.match(
        failed.reason!.message,
        /service web (restarted|is restarting|is exited \(exit code 1\)) during the soak/,
      );
      assert.equal(failed.currentDigest, v1.digest);
      assert.equal(failed.update?.outcome, "rolled-back");
      await waitFor(
        "v1's web running again",
        async () => (await runningServices(device, "jobs")).web?.includes("app-a"),
        30_000,
        200,
        agent.log,
      );
    }),
});
