/**
 * A compose child a killed agent left running is stopped by the next agent before it starts the app
 * itself: the agent is killed -9 while its `compose up` of a new version hangs (a wrapper around the real
 * docker-compose holds it), and the restarted agent ends that process, starts and verifies the version
 * itself. Real registry, the device's own dockerd, real compose.
 */
import assert from "node:assert/strict";
import { withServices } from "../harness/env.ts";
import { inScene, publish, runningServices, waitFor, waitForApp, writeConfig } from "./agent_harness.ts";
import { findLeftoverCompose } from "../../src/docker/compose_leftovers.ts";

/** A compose that holds its first `up` after `hold` appears (moving it to `held`), until it is killed. */
async function holdingCompose(dir: string): Promise<string> {
  const path = `${dir}/holding-compose`;
  await Deno.writeTextFile(
    path,
    [
      "#!/bin/bash",
      `if [[ " $* " == *" up "* ]] && mv "${dir}/hold" "${dir}/held" 2>/dev/null; then`,
      `  while [[ -e "${dir}/held" ]]; do sleep 0.2; done`,
      "fi",
      'exec docker-compose "$@"',
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  return path;
}

/** Whether `pid` still runs: a zombie (killed, not yet reaped by whoever inherited it) has no command line. */
function alive(pid: number): boolean {
  try {
    return Deno.readFileSync(`/proc/${pid}/cmdline`).length > 0;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "a compose process a killed agent left running is stopped by the next agent, which starts the app itself",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start, onCleanup }) => {
      onCleanup(() => Deno.remove(`${device.dir}/held`).catch(() => {}));
      const ref = `${proxy.host}/fleet/shop:stable`;
      const v1 = await publish(ref, { web: via(env.images.appA.ref) });
      await writeConfig(device, [ref]);
      const compose = await holdingCompose(device.dir);
      const config = await Deno.readTextFile(device.configPath);
      await Deno.writeTextFile(
        device.configPath,
        config.replace("compose: docker-compose", `compose: ${compose}`),
      );
      let agent = start();
      await waitForApp(device, "v1 running", (app) =>
        app.state === "running" && app.currentDigest === v1.digest, agent);

      await Deno.writeTextFile(`${device.dir}/hold`, "");
      const v2 = await publish(ref, { web: via(env.images.appB.ref) });
      const [held] = await waitFor(
        "v2's compose up held",
        async () => {
          const found = await findLeftoverCompose(device.composeRoot);
          return found.length > 0 && found.some((leftover) =>
              leftover.argv.includes("up")
            )
            ? found
            : undefined;
        },
        90_000,
        100,
        agent.log,
      );
      assert.equal(held.project, "shop");
      await agent.kill();
      assert.ok(alive(held.pid), "the agent's compose child outlives a kill -9");

      agent = start();
      const done = await waitForApp(
        device,
        "v2 running",
        (app) => app.state === "running" && app.currentDigest === v2.digest ? app : undefined,
        agent,
      );
      assert.equal(done.update?.outcome, "complete");
      assert.ok(!alive(held.pid), `the leftover compose ${held.pid} still runs\n${agent.log()}`);
      assert.match(agent.log(), /stopped a compose process a previous agent left running on app shop/);
      assert.ok((await runningServices(device, "shop")).web?.includes("app-b"), "v2's web runs");
      assert.deepEqual(await findLeftoverCompose(device.composeRoot), []);
    }),
});
