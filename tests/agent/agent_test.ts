/**
 * `berth agent` on real parts: a real registry behind the counting proxy, the device's own dockerd, real
 * compose. The agent runs as its own process with a config file, and is watched only through its status
 * socket, its log, the engine and the store — as fleet tooling and an operator would.
 */
import assert from "node:assert/strict";
import { runBerth, withServices } from "../harness/env.ts";
import {
  engineTags,
  getStatus,
  inScene,
  publish,
  runningServices,
  status,
  storedBlobs,
  versionBytes,
  waitFor,
  waitForApp,
  waitForPasses,
  writeConfig,
} from "./agent_harness.ts";
import type { AppStatus } from "../../src/agent/status_schema.ts";

const MiB = 1024 * 1024;

Deno.test({
  name:
    "agent: installs an app, follows its tag (keep 1, then keep 0 after SIGHUP), rolls back a broken version",
  ...withServices,
  fn: () =>
    inScene(async ({ env, proxy, via, device, start }) => {
      const { appA, appB, appC, big } = env.images;
      const tag = `${proxy.host}/fleet/shop:stable`;
      const v1 = await publish(tag, { web: via(appA.ref), worker: via(big.ref) });
      await writeConfig(device, [tag], ["keep: 1"]);
      proxy.resetStats();
      proxy.setThrottle(16 * MiB); // the 40 MiB image takes a few seconds: progress can be watched
      const agent = start();
      const log = agent.log;

      // 1. Progress while fetching: bytesTotal fixed and exact, bytesDone only grows and never passes it.
      const expectedTotal = await versionBytes(env.registry, "fleet/shop", v1);
      let lastDone = -1;
      let totalSeen: number | undefined;
      let samples = 0;
      const app = (s: { apps: AppStatus[] }) => s.apps.find((candidate) => candidate.name === "shop");
      const running = await waitFor(
        "v1 running",
        async () => {
          const current = await status(device);
          const shop = current && app(current);
          if (shop?.progress) {
            samples++;
            const { bytesDone, bytesTotal } = shop.progress;
            assert.ok(bytesDone >= lastDone, `bytesDone went back from ${lastDone} to ${bytesDone}`);
            assert.ok(bytesDone <= bytesTotal, `bytesDone ${bytesDone} > bytesTotal ${bytesTotal}`);
            if (totalSeen !== undefined) assert.equal(bytesTotal, totalSeen, "bytesTotal changed");
            totalSeen = bytesTotal;
            lastDone = bytesDone;
          }
          return shop?.state === "running" ? current : undefined;
        },
        90_000,
        100,
        log,
      );
      proxy.setThrottle(0);
      assert.ok(samples >= 3, `only ${samples} progress samples while fetching`);
      assert.equal(totalSeen, expectedTotal, "bytesTotal is every blob and manifest of the version");
      const shop1 = app(running)!;
      assert.equal(shop1.currentDigest, v1.digest);
      assert.equal(shop1.progress, undefined, "no fetch progress once the fetch is over");
      assert.deepEqual(Object.keys(await runningServices(device, "shop")).sort(), ["web", "worker"]);
      assert.ok(running.canRestoreOffline, "everything installed is in the store");
      assert.ok(running.engine.reachable);

      // ETag: polling with If-None-Match costs nothing while nothing changes.
      await waitFor(
        "a 304 for an unchanged status",
        async () => {
          const etag = (await getStatus(device)).headers.get("etag");
          assert.ok(etag, "status has an ETag");
          return (await getStatus(device, "/status", { "If-None-Match": etag })).status === 304;
        },
        20_000,
        500,
      );
      const metrics = await (await getStatus(device, "/metrics")).text();
      assert.match(metrics, /^berth_app_state\{app="shop",state="running"\} 1$/m);
      assert.match(metrics, /^berth_fetched_bytes_total [1-9]\d*$/m);
      assert.equal((await getStatus(device, "/healthz")).status, 200);

      // While the agent runs: writing commands are refused naming it, reading ones work.
      const pulled = await runBerth([
        ...device.options,
        "--config",
        device.configPath,
        "pull",
        via(appC.ref),
      ]);
      assert.equal(pulled.code, 1);
      assert.match(pulled.stderr, /in use by pid \d+ \(berth agent/);
      const listed = await runBerth([...device.options, "--config", device.configPath, "ls"]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /shop/);
      const told = await runBerth(["--config", device.configPath, "--json", "status"]);
      assert.equal(told.code, 0, told.stderr);
      assert.equal(JSON.parse(told.stdout).apps[0].state, "running");

      // 2. v2 under the same tag: only v2's new blobs cross the wire; keep=1 keeps v1's.
      const bigBlobs = [big.configDigest, ...big.layers.map((layer) => layer.digest)];
      const shared = new Set([appA.configDigest, ...appA.layers.map((layer) => layer.digest)]);
      proxy.resetStats();
      const v2 = await publish(tag, { web: via(appA.ref), worker: via(appB.ref) });
      const publishedAt = Date.now();
      proxy.resetStats();
      await waitFor(
        "v2 seen",
        async () => (await status(device))?.apps[0]?.desiredDigest === v2.digest,
        30_000,
        100,
      );
      const seenAfter = (Date.now() - publishedAt) / 1000;
      // pollInterval 2 s + pollJitter up to 1 s, and a second of slack for a busy machine.
      assert.ok(seenAfter <= 4, `the new version was noticed after ${seenAfter} s`);
      await waitForApp(
        device,
        "v2 running",
        (app) => app.currentDigest === v2.digest && app.state === "running",
        agent,
        60_000,
      );
      const fetched = [...proxy.stats.blobBytes.keys()];
      for (const digest of fetched) assert.ok(!shared.has(digest), `shared blob ${digest} fetched again`);
      assert.ok(fetched.includes(appB.configDigest), "v2's new image was fetched");
      const afterV2 = await storedBlobs(device);
      for (const digest of bigBlobs) assert.ok(afterV2.has(digest), `keep=1: v1's ${digest} is kept`);
      assert.ok(
        (await engineTags(device)).some((tag) => tag.includes("berth-test/big")),
        "keep=1: v1's image kept",
      );

      // 3. v3: now v1 is two versions back and goes; v2 (previous) stays.
      const v3 = await publish(tag, { web: via(appA.ref), worker: via(appC.ref) });
      const at3 = await waitFor(
        "v3 running",
        async () => {
          const current = await status(device);
          const shop = current?.apps.find((a) => a.name === "shop");
          // Running first, then pruned: the status shows the kept versions once prune is done.
          return shop?.currentDigest === v3.digest && shop.state === "running" &&
              shop.previousDigests.length === 1
            ? current
            : undefined;
        },
        60_000,
        200,
        log,
      );
      assert.deepEqual(at3.apps[0].previousDigests, [v2.digest]);
      const afterV3 = await storedBlobs(device);
      for (const digest of big.layers.slice(1).map((layer) => layer.digest)) {
        assert.ok(!afterV3.has(digest), `v1-only blob ${digest} pruned once v3 runs`);
      }
      assert.ok(afterV3.has(appB.configDigest), "v2 (the previous version) is kept");
      assert.ok(
        !(await engineTags(device)).some((tag) => tag.includes("berth-test/big")),
        "v1's image removed",
      );

      // 4. SIGHUP with keep: 0; v4 brings back appB only: v3's appC goes once v4 runs.
      await writeConfig(device, [tag], ["keep: 0"]);
      agent.process.kill("SIGHUP");
      await waitFor(
        "config reloaded",
        () => Promise.resolve(log().includes("config reloaded")),
        20_000,
        100,
        log,
      );
      const v4 = await publish(tag, { web: via(appA.ref), worker: via(appB.ref) });
      await waitForApp(
        device,
        "v4 running",
        (app) => app.currentDigest === v4.digest && app.state === "running",
        agent,
        60_000,
      );
      await waitFor(
        "v3's image pruned",
        async () => !(await storedBlobs(device)).has(appC.configDigest),
        10_000,
      );
      assert.ok((await storedBlobs(device)).has(appB.configDigest));

      // 5. A version that does not come up is rolled back, reported, and not retried while the tag stays.
      const v5 = await publish(tag, { web: via(appA.ref), worker: via(appC.ref) }, { failing: "worker" });
      const failed = await waitFor(
        "v5 failed and rolled back",
        async () => {
          const shop = (await status(device))?.apps.find((a) => a.name === "shop");
          return shop?.state === "failed" && shop.desiredDigest === v5.digest ? shop : undefined;
        },
        90_000,
        200,
        log,
      );
      assert.equal(failed.reason?.code, "compose_failed");
      assert.match(failed.reason!.message, /worker/);
      assert.equal(failed.currentDigest, v4.digest, "still on v4");
      // Rolled back: both of v4's services run, the worker on v4's image (app-b).
      const v4RunningAgain = () =>
        waitFor(
          "v4 running again",
          async () => {
            const services = await runningServices(device, "shop");
            return Object.keys(services).length === 2 && services.worker?.includes("app-b");
          },
          30_000,
          200,
          log,
        );
      await v4RunningAgain();
      const failures = () => log().split("\n").filter((line) => line.includes("failed to start")).length;
      const attempts = failures();
      // Two whole polls of the tag, each of which would have retried v5, before checking that none did.
      await waitForPasses(device, 3, agent);
      assert.equal(
        failures(),
        attempts,
        "a failed version is not retried while the tag still names it",
      );

      // 6. A broken config on SIGHUP is refused; the agent carries on with the old one.
      await Deno.writeTextFile(device.configPath, `apps: [${JSON.stringify(tag)}]\npollInterval: soon\n`);
      agent.process.kill("SIGHUP");
      await waitFor(
        "reload refused",
        () => Promise.resolve(/reload refused.*pollInterval/.test(log())),
        20_000,
        100,
        log,
      );
      assert.equal((await getStatus(device, "/healthz")).status, 200);

      // 7. A good reload is also how an operator asks for the failed version to be tried again.
      const failedSoFar = failures();
      await writeConfig(device, [tag], ["keep: 0"]);
      agent.process.kill("SIGHUP");
      await waitFor(
        "v5 tried again after the reload",
        () => Promise.resolve(failures() > failedSoFar),
        60_000,
        200,
        log,
      );
      await v4RunningAgain();

      assert.equal(await agent.stop(), 0, "SIGTERM stops the agent cleanly");
      const fsck = await runBerth([...device.options, "fsck"]);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    }),
});
