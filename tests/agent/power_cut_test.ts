/**
 * The agent's update across a power cut: the store (with agent.json) and the compose root live on
 * powercut_fs, which loses what was not fsynced. While the agent updates an app from v1 to v2, the power is
 * cut just before a seeded random change: the agent is killed with SIGKILL and the engine's containers with
 * it. After a remount over what the disk kept, fsck finds no damage, and a restarted agent brings v2 up.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, withServices } from "../harness/env.ts";
import { mountPowerCut, type PowerCutMount } from "../harness/powercut.ts";
import { run } from "../harness/services.ts";
import { seededRandom } from "../harness/seed.ts";
import {
  type Device,
  inScene,
  publish,
  type RunningAgent,
  status,
  waitForApp,
  writeConfig,
} from "./agent_harness.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Puts the device's store and compose root on `root` (a mounted powercut filesystem). */
function moveOnto(device: Device, root: string): void {
  const was = { [device.store]: `${root}/store`, [device.composeRoot]: `${root}/apps` };
  device.store = `${root}/store`;
  device.composeRoot = `${root}/apps`;
  device.options = device.options.map((option) => was[option] ?? option);
}

/** fsck on the device: no missing or corrupt blob, no stray entry (stale ingests and temp files allowed). */
async function assertNoDamage(device: Device, when: string, cutLog: string): Promise<void> {
  const result = await runBerth([...device.options, "--json", "fsck"]);
  const said = `${result.stdout}${result.stderr}\nthe power cut:\n${cutLog}`;
  assert.equal(result.code, 0, `${when}: fsck exit ${result.code}:\n${said}`);
}

/** Kills every container of the engine, as a power cut would. */
async function killContainers(device: Device): Promise<void> {
  const docker = ["docker", "-H", device.dockerd.host];
  const ids = (await run([...docker, "ps", "-q"])).trim().split("\n").filter(Boolean);
  if (ids.length) await run([...docker, "kill", ...ids]);
}

Deno.test({
  name: "agent update on a filesystem whose power is cut at a random change: no damage, v2 comes up after",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start, onCleanup }) => {
      const random = seededRandom("power cut during an agent update");
      const backing = await scratchDir("powercut-agent-backing-");
      const root = await scratchDir("powercut-agent-mnt-");
      let mount: PowerCutMount = await mountPowerCut(backing, root);
      onCleanup(() => mount.unmount());
      moveOnto(device, root);
      const ref = `${proxy.host}/fleet/powercut:stable`;
      const v1 = await publish(ref, { web: via(env.images.appA.ref) }, { conf: true });
      await writeConfig(device, [ref]);
      let agent: RunningAgent = start();
      await waitForApp(device, "v1 running", (app) =>
        app.state === "running" && app.currentDigest === v1.digest, agent);
      assert.equal(await agent.stop(), 0, agent.log());
      await mount.unmount();

      /** One update to v2 with the power cut before change `cutAt` (0: after v2 runs); how many it saw. */
      const update = async (label: string, cutAt: number, v2Images: Record<string, string>) => {
        mount = await mountPowerCut(backing, root, cutAt);
        const v2 = await publish(ref, v2Images, { conf: true });
        agent = start();
        let cut = false;
        mount.whenCut.then(() =>
          cut = true
        );
        for (const started = Date.now(); !cut; await sleep(100)) {
          const app = (await status(device))?.apps[0];
          if (app?.state === "running" && app.currentDigest === v2.digest) {
            break;
          }
          assert.ok(Date.now() - started < 90_000, `${label}: neither v2 running nor a cut:\n${agent.log()}`);
        }
        const wasCut = cut;
        await agent.kill();
        await killContainers(device);
        await mount.cut();
        const changes = mount.changes() ?? 0;
        const cutLog = mount.log();
        const lost = /lost \d+ directory change\(s\), \d+ undone/.exec(cutLog)?.[0];
        mount = await mountPowerCut(backing, root);
        await assertNoDamage(device, `${label} after the cut`, cutLog);
        agent = start();
        await waitForApp(device, `${label}: v2 running after the cut`, (app) =>
          app.state === "running" && app.currentDigest === v2.digest, agent);
        assert.equal(await agent.stop(), 0, agent.log());
        await assertNoDamage(device, `${label} after the restarted agent`, cutLog);
        // What a cut can leave behind that nothing above fails on: shown, so that a report can say it.
        const composeRoot = [];
        for await (const entry of Deno.readDir(device.composeRoot)) {
          composeRoot.push(entry.name);
        }
        await mount.unmount();
        console.log(
          `${label}: cut ${
            wasCut ? `before change ${changes}` : `after all ${changes} changes`
          }; ${lost}; compose root after: ${composeRoot.sort().join(" ")}`,
        );
        return changes;
      };
      // Each update brings a version with other images, so that every one pulls, loads and swaps.
      const versions = [env.images.appB, env.images.appC, env.images.appOci, env.images.appA];
      const full = await update("uncut", 0, { web: via(versions[0].ref) });
      for (let i = 1; i < versions.length; i++) {
        await update(`cut ${i}`, 1 + random.below(full), { web: via(versions[i].ref) });
      }
    }),
});
