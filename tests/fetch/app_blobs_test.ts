/**
 * An app's own blobs (bundle, bundle index, layers meta) must be fetched before berth knows which images
 * the app pins, so they are judged first, by the sizes the manifest declares: over their cap (`limits.*`)
 * they are refused, and they must pass the storage pre-flight — all before any byte is fetched. Only the
 * blobs the compose-app format defines are fetched. The app manifest is served by the fault proxy (the real
 * registry would not store a manifest naming blobs it lacks); everything else comes from the real registry.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, snapshotTree, testEnv, withServices } from "../harness/env.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { writeProject } from "../harness/projects.ts";
import { MANIFEST_ACCEPT } from "../harness/images.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const MiB = 1024 * 1024;

Deno.test({
  name:
    "an app's bundle is judged by its declared size before it is fetched: over limits.bundle, or more than " +
    "the store can take, it is refused with nothing written; check stores only what passed",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const work = await scratchDir("app-blobs-");
    const project = `${work}/project`;
    await Deno.mkdir(project);
    await writeProject(project, { web: env.images.base.ref });
    const published = await runBerth(["publish", project, `${env.registry}/berth-test/small-blobs:1`]);
    assert.equal(published.code, 0, published.stderr);
    const response = await fetch(`http://${env.registry}/v2/berth-test/small-blobs/manifests/1`, {
      headers: { Accept: MANIFEST_ACCEPT },
    });
    const app = await response.json() as {
      config: { digest: string };
      layers: { size: number; digest: string }[];
    };

    const proxy = await startFaultProxy(env.registry);
    // A bundle the manifest says is 300 MB (the blob does not exist: it must never be asked for).
    const huge = structuredClone(app);
    huge.layers[0] = { ...huge.layers[0], size: 300_000_000, digest: `sha256:${"9".repeat(64)}` };
    proxy.overrideResponse("/v2/berth-test/huge-bundle/manifests/1", {
      contentType: OCI_MANIFEST,
      body: new TextEncoder().encode(JSON.stringify(huge)),
    });
    const store = `${work}/store`;
    const seeded = await runBerth(["--store", store, "pull", env.images.base.ref]);
    assert.equal(seeded.code, 0, seeded.stderr);
    const before = await snapshotTree(store);
    const config = async (text: string) => {
      const path = `${work}/config-${crypto.randomUUID()}.yml`;
      await Deno.writeTextFile(path, text);
      return path;
    };
    const hugeRef = `${proxy.host}/berth-test/huge-bundle:1`;

    // Over the cap: refused, naming the blob, its size and the key that sets the cap.
    const capped = await config("limits: { bundle: 100MiB }\n");
    for (const command of ["pull", "check"]) {
      const result = await runBerth(["--store", store, "--config", capped, command, hugeRef]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stderr.trim(),
        new RegExp(
          `^berth: ${
            hugeRef.replaceAll(".", "\\.")
          } manifest sha256:[0-9a-f]{64} bundle: sha256:9{64} declares ` +
            `300000000 bytes, over the ${100 * MiB}-byte limit \\(limits\\.bundle in the config file\\)$`,
        ),
      );
    }
    // Under the cap but more than the store may take: the pre-flight refuses it, before any blob is fetched.
    const reserve = await config("storage: { reserve: 100TB }\n");
    for (const command of ["pull", "check"]) {
      const result = await runBerth(["--store", store, "--config", reserve, command, hugeRef]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /not enough space for .*huge-bundle:1 in the store/);
      assert.match(result.stderr, /needs 286\.\d MiB/);
    }
    assert.deepEqual(
      proxy.stats.requests.filter((request) => request.path.includes("/blobs/")),
      [],
      "no blob was asked for",
    );
    assert.deepEqual(await snapshotTree(store), before, "the store is untouched");

    // An app that fits: check stores its own blobs (to learn its images) and nothing else.
    const smallRef = `${proxy.host}/berth-test/small-blobs:1`;
    const checked = await runBerth(["--store", store, "check", smallRef]);
    assert.equal(checked.code, 0, checked.stderr);
    const fetched = proxy.stats.requests.filter((request) =>
      request.method === "GET" && request.path.includes("/blobs/")
    )
      .map((request) => request.path.replace(/^.*\/blobs\//, "")).sort();
    const own = [app.config.digest, ...app.layers.map((layer) => layer.digest)];
    const index = (app.layers[0] as unknown as { annotations: Record<string, string> }).annotations[
      "org.foundries.app.bundle.index.digest"
    ];
    assert.deepEqual(
      fetched,
      [...new Set([...own, index])].sort(),
      "the empty config, the bundle and its index, no layer",
    );
    await proxy.close();
    const fsck = await runBerth(["--store", store, "fsck"]);
    assert.equal(fsck.code, 0, fsck.stdout);
    await Deno.remove(work, { recursive: true });
  },
});
