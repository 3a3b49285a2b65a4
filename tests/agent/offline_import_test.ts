/**
 * After an import from removable media, the agent installs the imported version with the registry out of
 * reach: the tag's entry in the store stands in for the registry's answer, and every manifest and blob
 * comes from the store.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, withServices } from "../harness/env.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { inScene, publish, runningServices, status, waitFor, writeConfig } from "./agent_harness.ts";

Deno.test({
  name: "agent: an app imported from an export is installed and run with its registry out of reach",
  ...withServices,
  fn: () =>
    inScene(async ({ env, device, start }) => {
      const gone = await startFaultProxy(env.registry);
      const tag = `${gone.host}/fleet/offline:stable`;
      let published;
      const media = `${await scratchDir("offline-media-")}/export`;
      try {
        published = await publish(tag, { web: env.images.appA.ref.replace(env.registry, gone.host) });
        const elsewhere = await scratchDir("offline-source-");
        const pulled = await runBerth(["--store", elsewhere, "pull", tag]);
        assert.equal(pulled.code, 0, pulled.stderr);
        const exported = await runBerth(["--store", elsewhere, "export", "--to", media, tag]);
        assert.equal(exported.code, 0, exported.stderr);
      } finally {
        await gone.close();
      }
      const imported = await runBerth(["--store", device.store, "import", media]);
      assert.equal(imported.code, 0, imported.stderr);
      await writeConfig(device, [tag]);
      const agent = start();
      const running = await waitFor(
        "the imported app running",
        async () => {
          const current = await status(device);
          return current?.apps.find((app) => app.name === "offline")?.state === "running"
            ? current
            : undefined;
        },
        90_000,
        200,
        agent.log,
      );
      assert.equal(running.apps.find((app) => app.name === "offline")!.currentDigest, published.digest);
      assert.deepEqual(Object.keys(await runningServices(device, "offline")), ["web"]);
      assert.match(agent.log(), /registry out of reach; the store's sha256:[0-9a-f]{64} stands in/);
    }),
});
