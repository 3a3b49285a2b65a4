/**
 * The agent where devices get hurt: a factory reset while it is stopped, kill -9 mid-fetch and
 * mid-install, and a store too small for the app.
 */
import assert from "node:assert/strict";
import { run } from "../harness/services.ts";
import { runBerth, withServices } from "../harness/env.ts";
import {
  factoryReset,
  inScene,
  publish,
  type RunningAgent,
  runningServices,
  status,
  storedBlobs,
  waitFor,
  waitForApp,
  waitForPasses,
  writeConfig,
} from "./agent_harness.ts";

const MiB = 1024 * 1024;

Deno.test({
  name:
    "agent: after a factory reset the app runs again from the store, with the registry down, no blob fetched",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const tag = `${proxy.host}/fleet/reset:stable`;
      let agent: RunningAgent;
      await publish(tag, { web: via(env.images.appA.ref), api: via(env.images.appB.ref) });
      await writeConfig(device, [tag]);
      agent = start();
      await waitForApp(device, "running", (app) => app.state === "running", agent, 90_000, 200);
      assert.equal(await agent.stop(), 0);

      // Factory reset: the engine's data root and the compose root are wiped; the store is kept.
      await factoryReset(device);
      assert.deepEqual(await runningServices(device, "reset"), {}, "the engine is empty");
      await writeConfig(device, [tag]);

      // The registry answers nothing now.
      proxy.resetStats();
      proxy.addRequestFault({ method: "GET", path: /^\/v2\//, status: 503, times: Infinity });
      proxy.addRequestFault({ method: "HEAD", path: /^\/v2\//, status: 503, times: Infinity });
      agent = start();
      await waitFor(
        "both services running again",
        async () => {
          const services = await runningServices(device, "reset");
          return Object.keys(services).length === 2;
        },
        60_000,
        200,
        agent.log,
      );
      // The audit publishes canRestoreOffline once it has checked every app (just after starting them).
      await waitFor("canRestoreOffline", async () => (await status(device))?.canRestoreOffline, 10_000);
      assert.equal(proxy.stats.blobBytes.size, 0, "no blob was fetched");
      const log = agent.log();
      const started = log.indexOf("started app reset");
      assert.ok(started >= 0, log);
      assert.ok(log.indexOf("re-created app reset from the store") < started, log);

      // The registry back: the agent finds the tag unchanged and fetches nothing.
      proxy.clearFaults();
      await waitFor(
        "running with the registry back",
        async () => {
          const app = (await status(device))?.apps[0];
          return app?.state === "running" && app.reason === undefined;
        },
        30_000,
        200,
        agent.log,
      );
      // A whole poll with the registry back, which would have fetched had the tag looked changed.
      await waitForPasses(device, 2, agent);
      assert.ok(
        proxy.stats.requests.some((request) =>
          request.path.includes("/manifests/") && request.status === 200
        ),
        "the agent asked the registry for the tag after it came back",
      );
      assert.equal(proxy.stats.blobBytes.size, 0, "still no blob fetched");
      assert.equal(await agent.stop(), 0);
    }),
});

Deno.test({
  name:
    "agent: SIGTERM and kill -9 mid-fetch, kill -9 mid-install; restarted, it completes and the store passes fsck",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const tag = `${proxy.host}/fleet/killed:stable`;
      let agent: RunningAgent;
      await publish(tag, { web: via(env.images.appA.ref), worker: via(env.images.big.ref) });
      await writeConfig(device, [tag]);
      proxy.setThrottle(8 * MiB);
      // SIGTERM mid-fetch: a clean stop (exit 0) with the partial download kept for the next start.
      agent = start();
      await waitForApp(
        device,
        "4 MiB fetched",
        (app) => (app.progress?.bytesDone ?? 0) > 4 * MiB,
        agent,
        60_000,
        100,
      );
      const stopping = performance.now();
      assert.equal(await agent.stop(), 0, agent.log());
      assert.ok(performance.now() - stopping < 5_000, "SIGTERM stops a fetch at once");
      assert.match(agent.log(), /SIGTERM: stopping/);
      const partials = [...Deno.readDirSync(`${device.store}/ingest`)];
      assert.ok(partials.length > 0, "the partial download is kept");

      agent = start();
      await waitFor(
        "10 MiB fetched",
        async () => {
          const progress = (await status(device))?.apps[0]?.progress;
          return progress && progress.bytesDone > 10 * MiB;
        },
        60_000,
        100,
        agent.log,
      );
      await agent.kill();

      // Restarted: the partial layer continues at its byte (a Range request), then kill during install.
      // Images load as they arrive (the small one first), so `installing` can begin before the big layer
      // resumes: the kill waits for both; the throttle keeps `installing` long enough to be seen.
      proxy.resetStats();
      proxy.setThrottle(16 * MiB);
      const rangeSeen = () =>
        proxy.stats.requests.some((request) => request.range !== null && !/^bytes=0-/.test(request.range));
      agent = start();
      const resumed = await waitForApp(
        device,
        "installing, the partial layer resumed",
        (app) => app.state === "installing" && rangeSeen() && app,
        agent,
        60_000,
        50,
      );
      await agent.kill();
      proxy.setThrottle(0);
      assert.ok(rangeSeen(), "the download resumed with a Range request");
      // Images load while the rest downloads: `installing` may come before the fetch is over; once it is
      // (fetchedAt), its progress is gone.
      if (resumed.update?.fetchedAt) {
        assert.equal(
          resumed.progress,
          undefined,
          "installing, fetched: the fetch is over, so is its progress",
        );
      }

      agent = start();
      await waitForApp(device, "running", (app) => app.state === "running", agent, 90_000, 200);
      assert.deepEqual(Object.keys(await runningServices(device, "killed")).sort(), ["web", "worker"]);
      assert.equal(await agent.stop(), 0);
      const fsck = await runBerth([...device.options, "fsck"]);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      assert.match(fsck.stdout, /ok|clean|no problems/i);
    }),
});

Deno.test({
  name:
    "agent: an app larger than the store's free space is blocked, nothing is downloaded; more space unblocks it",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start, onCleanup }) => {
      const tag = `${proxy.host}/fleet/roomy:stable`;
      await Deno.mkdir(device.store, { recursive: true });
      await run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", device.store]);
      onCleanup(() => run(["umount", device.store]).then(() => {}));
      await publish(tag, { web: via(env.images.appA.ref), worker: via(env.images.big.ref) });
      await writeConfig(device, [tag], ["storage: { watermark: 100, reserve: 1MiB }"]);
      proxy.resetStats();
      // The same pre-flight from the command line: check says it does not fit; pull refuses to start.
      const berth = (...args: string[]) => runBerth(["--config", device.configPath, ...args]);
      const checked = await berth("check", tag);
      assert.equal(checked.code, 1, checked.stdout + checked.stderr);
      assert.match(checked.stdout, /^store \(.*\): needs .* does NOT fit$/m);
      assert.match(checked.stderr, /not enough space for .*roomy.* in the store/);
      const pulled = await berth("pull", via(env.images.big.ref));
      assert.equal(pulled.code, 1);
      assert.match(pulled.stderr, /not enough space for .*berth-test\/big.* needs 4\d\.\d MiB/);
      const agent = start();
      const blocked = await waitForApp(
        device,
        "blocked",
        (app) => app.state === "blocked" && app,
        agent,
        60_000,
        200,
      );
      assert.equal(blocked.reason?.code, "insufficient_storage");
      const needBytes = Number(blocked.reason?.details?.needBytes);
      const freeBytes = Number(blocked.reason?.details?.freeBytes);
      assert.ok(needBytes > 40 * MiB, `needBytes ${needBytes}`);
      assert.ok(freeBytes < 16 * MiB, `freeBytes ${freeBytes}`);
      // Blocked is not a one-off verdict: a whole later pass, which could have started the download, did not.
      await waitForPasses(device, 2, agent);
      const layers = [...env.images.big.layers, ...env.images.appA.layers].map((layer) => layer.digest);
      for (const digest of layers) {
        assert.ok(!proxy.stats.blobBytes.has(digest), `layer ${digest} was downloaded while blocked`);
        assert.ok(!(await storedBlobs(device)).has(digest));
      }

      await run(["mount", "-o", "remount,size=256m", device.store]);
      // (check takes the store's lock, so it is asked again only once the agent is done)
      await waitForApp(
        device,
        "running once there is room",
        (app) => app.state === "running",
        agent,
        90_000,
        200,
      );
      assert.equal(await agent.stop(), 0);
      const fits = await berth("check", tag);
      assert.equal(fits.code, 0, fits.stdout + fits.stderr);
      assert.match(fits.stdout, /: fits$/m);
    }),
});
