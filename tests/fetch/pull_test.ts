/**
 * Pulling real images (built with docker, pushed with skopeo) from a real docker-registry, and reading the
 * store back with skopeo and dockerd.
 */
import assert from "node:assert/strict";
import { run } from "../harness/services.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

const BLOBS = "blobs/sha256";

async function blobFiles(store: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${store}/${BLOBS}`))).map((entry) => `sha256:${entry.name}`)
    .sort();
}

function viaProxy(ref: string, registry: string, proxyHost: string): string {
  return ref.replace(registry, proxyHost);
}

Deno.test({
  name: "three images sharing a base layer store it once, and skopeo and dockerd read the store",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA, appB, appC } = env.images;
    const proxy = await startFaultProxy(env.registry);
    try {
      const store = await scratchDir("share-");
      const refs = [appA, appB, appC].map((image) => viaProxy(image.ref, env.registry, proxy.host));
      const pulled = await runBerth(["--store", store, "pull", ...refs]);
      assert.equal(pulled.code, 0, pulled.stderr);

      const base = appA.layers[0].digest;
      assert.equal(appB.layers[0].digest, base, "the test images share their base layer");
      const distinct = new Set(
        [appA, appB, appC].flatMap((image) => [image.configDigest, ...image.layers.map((l) => l.digest)]),
      );
      // Every distinct blob crossed the wire exactly once, the shared base layer too.
      for (const digest of distinct) {
        const stored = await Deno.stat(`${store}/${BLOBS}/${digest.slice(7)}`);
        assert.equal(proxy.stats.blobBytes.get(digest), stored.size, `${digest} served once`);
      }
      assert.equal(proxy.stats.blobBytes.size, distinct.size);
      const files = await blobFiles(store);
      for (const digest of distinct) {
        assert.ok(files.includes(digest), `${digest} stored`);
        const mode = (await Deno.stat(`${store}/${BLOBS}/${digest.slice(7)}`)).mode! & 0o777;
        assert.equal(mode, 0o444, `${digest} is read-only once committed`);
      }
      // Plus, per image: its manifest and the OCI wrapper index around a Docker v2 manifest.
      assert.equal(files.length, distinct.size + 3 * 2);
      for (const image of [appA, appB, appC]) {
        assert.ok(
          files.includes(image.digest),
          "the manifest is stored under the digest the registry served",
        );
      }

      // skopeo reads berth's store as an OCI layout, by the full normalised reference.
      const inspected = JSON.parse(await run(["skopeo", "inspect", `oci:${store}:${refs[0]}`]));
      assert.deepEqual(inspected.Layers, appA.layers.map((layer) => layer.digest));
      assert.equal(inspected.Architecture, "amd64");
      const target = "berth-test-copy/app-a:1";
      await run([
        "skopeo",
        "copy",
        "-q",
        "--dest-daemon-host",
        env.dockerHost,
        `oci:${store}:${refs[0]}`,
        `docker-daemon:${target}`,
      ]);
      const id =
        (await run(["docker", "-H", env.dockerHost, "image", "inspect", "--format", "{{.Id}}", target]))
          .trim();
      assert.equal(id, appA.configDigest, "skopeo loads the image with its original image ID");
      await run(["docker", "-H", env.dockerHost, "rmi", target]);

      const listed = await runBerth(["--store", store, "--json", "ls"]);
      assert.equal(listed.code, 0, listed.stderr);
      const { images } = JSON.parse(listed.stdout);
      assert.deepEqual(images.map((image: { ref: string }) => image.ref), [...refs].sort());
      for (const image of images) {
        const source = [appA, appB, appC].find((candidate) =>
          viaProxy(candidate.ref, env.registry, proxy.host) === image.ref
        )!;
        assert.equal(image.digest, source.digest);
        assert.equal(image.platform, "linux/amd64");
      }
      assert.equal((await runBerth(["--store", store, "fsck"])).code, 0);

      // A second pull downloads nothing.
      proxy.resetStats();
      const again = await runBerth(["--store", store, "pull", ...refs]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(proxy.totalBlobBytes(), 0);
      assert.match(again.stderr, /already stored/);
    } finally {
      await proxy.close();
    }
  },
});

Deno.test({
  name: "an OCI image is named directly in index.json, and pulls by digest work",
  ...withServices,
  async fn() {
    const { appOci } = testEnv()!.images;
    const store = await scratchDir("oci-");
    const byDigest = `${appOci.ref.replace(/:[^:/]+$/, "")}@${appOci.digest}`;
    const pulled = await runBerth(["--store", store, "pull", appOci.ref, byDigest]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const index = JSON.parse(await Deno.readTextFile(`${store}/index.json`));
    assert.equal(index.manifests.length, 2);
    for (const entry of index.manifests) {
      assert.equal(entry.mediaType, "application/vnd.oci.image.manifest.v1+json");
      assert.equal(entry.digest, appOci.digest);
    }
    const inspected = JSON.parse(await run(["skopeo", "inspect", `oci:${store}:${byDigest}`]));
    assert.equal(inspected.Digest, appOci.digest);
  },
});

Deno.test({
  name: "from a multi-platform index only the chosen platform is fetched; the index is stored as served",
  ...withServices,
  async fn() {
    const { multi, appA, appB } = testEnv()!.images;
    const amd = await scratchDir("multi-amd64-");
    const pulled = await runBerth(["--store", amd, "--json", "pull", multi.ref]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const [result] = JSON.parse(pulled.stdout).pulled;
    assert.equal(result.digest, multi.digest);
    assert.equal(result.platform, "linux/amd64");
    assert.equal(result.manifestDigest, appA.digest);
    const files = await blobFiles(amd);
    assert.ok(files.includes(multi.digest), "the index is stored as served");
    assert.ok(!files.includes(appB.configDigest), "nothing of the other platform is fetched");

    const arm = await scratchDir("multi-arm64-");
    const armPull = await runBerth([
      "--store",
      arm,
      "--platform",
      "linux/aarch64",
      "--json",
      "pull",
      multi.ref,
    ]);
    assert.equal(armPull.code, 0, armPull.stderr);
    assert.equal(JSON.parse(armPull.stdout).pulled[0].manifestDigest, appB.digest);
    assert.equal(JSON.parse(armPull.stdout).pulled[0].platform, "linux/arm64");

    const none = await scratchDir("multi-none-");
    const refused = await runBerth(["--store", none, "--platform", "linux/riscv64", "pull", multi.ref]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /no image for platform linux\/riscv64; it offers: linux\/amd64, linux\/arm64/,
    );
    assert.equal(refused.stderr.trim().split("\n").length, 1);
  },
});
