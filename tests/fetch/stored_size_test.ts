/**
 * A manifest that misstates the size of a blob the store already has is refused like one whose download
 * would not match: the digest names the right content, but the manifest is wrong, and a store that took it
 * would record a descriptor no registry serves. The fault proxy serves the altered manifest (the real
 * registry keeps manifests as pushed); the blobs come from the real registry.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, snapshotTree, testEnv, withServices } from "../harness/env.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { MANIFEST_ACCEPT } from "../harness/images.ts";

Deno.test({
  name:
    "a manifest declaring another size for a blob already stored is refused, naming the blob; the store is unchanged",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const work = await scratchDir("stored-size-");
    const store = `${work}/store`;
    const seeded = await runBerth(["--store", store, "pull", env.images.appA.ref]);
    assert.equal(seeded.code, 0, seeded.stderr);
    const before = await snapshotTree(store);

    const response = await fetch(`http://${env.registry}/v2/berth-test/app-a/manifests/1`, {
      headers: { Accept: MANIFEST_ACCEPT },
    });
    const manifest = await response.json() as {
      mediaType: string;
      layers: { size: number; digest: string }[];
    };
    const layer = manifest.layers[0];
    manifest.layers[0] = { ...layer, size: layer.size + 1 };
    const proxy = await startFaultProxy(env.registry);
    try {
      proxy.overrideResponse("/v2/berth-test/app-a/manifests/lying", {
        contentType: manifest.mediaType,
        body: new TextEncoder().encode(JSON.stringify(manifest)),
      });
      const pulled = await runBerth(["--store", store, "pull", `${proxy.host}/berth-test/app-a:lying`]);
      assert.equal(pulled.code, 1, pulled.stderr);
      assert.match(
        pulled.stderr,
        new RegExp(
          `declares ${layer.size + 1} bytes for blob ${layer.digest}, which is stored with ${layer.size}`,
        ),
      );
      assert.deepEqual(await snapshotTree(store), before, "the store is unchanged");
    } finally {
      await proxy.close();
    }
  },
});
