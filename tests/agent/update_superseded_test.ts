/**
 * An update that will not go on is shown as such: killed mid-fetch, the agent comes back to a tag that
 * moved on (the new update records which one it `supersedes`, and the old one is ended `superseded`), or
 * moved back to the version installed (the update ends `cancelled`, the app keeps running). Real registry,
 * the device's own dockerd, real compose.
 */
import assert from "node:assert/strict";
import { withServices } from "../harness/env.ts";
import {
  type Device,
  inScene,
  managed,
  publish,
  type RunningAgent,
  waitFor,
  waitForApp,
  writeConfig,
} from "./agent_harness.ts";

/** Waits until the agent is fetching `digest`, then kills it -9. */
async function killWhileFetching(device: Device, agent: RunningAgent, digest: string): Promise<void> {
  await waitFor(
    `the agent fetching ${digest}`,
    async () => {
      const update = (await managed(device, "shop"))?.update;
      return update?.digest === digest && update.step === "fetching";
    },
    60_000,
    20,
    agent.log,
  );
  await agent.kill();
}

Deno.test({
  name:
    "update: a tag that moved on mid-update supersedes it; one moved back to the installed version cancels it",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const { appA, appB } = env.images;
      const ref = `${proxy.host}/fleet/shop:stable`;
      const v1 = await publish(ref, { web: via(appA.ref) });
      await writeConfig(device, [ref]);
      let agent = start();
      await waitForApp(device, "v1 running", (app) =>
        app.state === "running" && app.currentDigest === v1.digest, agent);

      // v2 downloads slowly; the agent is killed while fetching it, and the tag moves on to v3.
      proxy.setThrottle(20_000);
      const v2 = await publish(ref, { web: via(appB.ref) });
      await killWhileFetching(device, agent, v2.digest);
      const v3 = await publish(ref, { web: via(appB.ref) }, { conf: true });
      proxy.setThrottle(0);
      agent = start();
      const done = await waitForApp(
        device,
        "v3 running",
        (app) =>
          app.state === "running" && app.currentDigest === v3.digest ? app : undefined,
        agent,
      );
      assert.equal(done.update?.digest, v3.digest);
      assert.equal(done.update?.outcome, "complete");
      assert.equal(done.update?.supersedes, v2.digest, "the update says which one it replaced");
      assert.match(agent.log(), new RegExp(`update of app shop to ${v2.digest} superseded`));

      // v4 is killed mid-fetch too, and the tag goes back to v3, the version installed: nothing to do.
      proxy.setThrottle(20_000);
      const v4 = await publish(ref, { web: via(appA.ref) }, { conf: true });
      await killWhileFetching(device, agent, v4.digest);
      const back = await publish(ref, { web: via(appB.ref) }, { conf: true });
      assert.equal(back.digest, v3.digest, "publishing the same project again gives the same digest");
      proxy.setThrottle(0);
      agent = start();
      const cancelled = await waitForApp(
        device,
        "v4's update cancelled",
        (app) =>
          app.update?.digest === v4.digest && app.update.outcome === "cancelled" ? app : undefined,
        agent,
      );
      assert.equal(cancelled.state, "running");
      assert.equal(cancelled.currentDigest, v3.digest);
      assert.equal((await managed(device, "shop"))?.update?.outcome, "cancelled", "agent.json says so too");
    }),
});
