/**
 * `publish` writes the layers meta as composectl's publish does (layers[1], annotation `layers-meta: v1`,
 * `{arch: {fs_block_size, layers: {digest: {size, usage, archive_size}}}}`), measured from the pinned
 * images' layers: the unpacked sizes agree with what the engine says of the same images, the manifest reads
 * back with berth's own reader, and a pull's pre-flight then counts the measured usage.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { MANIFEST_ACCEPT } from "../harness/images.ts";
import { writeProject } from "../harness/projects.ts";
import { run } from "../harness/services.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { parseAppManifest } from "../../src/app/app_manifest.ts";
import { readAppArtifact } from "../../src/app/artifact.ts";
import { parseLayersMeta } from "../../src/app/layers_meta.ts";
import { DEFAULT_BLOB_LIMITS } from "../../src/config/defaults.ts";
import { pull, type PullPlan } from "../../src/fetch/pull.ts";
import { parseLayerUsage, UNPACK_ESTIMATE_FACTOR, unpackedBytes } from "../../src/fetch/preflight.ts";
import { parseReference } from "../../src/oci/reference.ts";
import { RegistryClient } from "../../src/registry/client.ts";
import { Store } from "../../src/store/store.ts";

/** What the registry serves for `repository:tag`, manifest or blob. */
async function registryGet(registry: string, path: string): Promise<Uint8Array> {
  const response = await fetch(`http://${registry}/v2/${path}`, { headers: { Accept: MANIFEST_ACCEPT } });
  assert.equal(response.status, 200, path);
  return await response.bytes();
}

/** Publishes a project of `images` as `registry/lm/<name>:1`; the app manifest and its layers meta. */
async function publish(registry: string, name: string, images: Record<string, string>, ...flags: string[]) {
  const dir = await scratchDir(`lm-${name}-`);
  await writeProject(dir, images);
  const started = performance.now();
  const result = await runBerth(["--json", "publish", ...flags, dir, `${registry}/lm/${name}:1`]);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.code, 0, result.stderr);
  console.log(`publish ${name} ${flags.join(" ")}: ${seconds.toFixed(2)} s`);
  const manifestBytes = await registryGet(registry, `lm/${name}/manifests/1`);
  const app = parseAppManifest(manifestBytes, name);
  return {
    app,
    manifest: JSON.parse(new TextDecoder().decode(manifestBytes)),
    output: JSON.parse(result.stdout),
  };
}

/** The engine's unpacked size of an image it holds (overlay2 counts file bytes and symlink targets). */
async function engineSize(dockerHost: string, image: string): Promise<number> {
  return Number(await run(["docker", "-H", dockerHost, "image", "inspect", "-f", "{{.Size}}", image]));
}

Deno.test({
  name: "publish measures layers meta per arch in composectl's shape; sizes agree with the engine's",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA, multi } = env.images;
    const { app, manifest, output } = await publish(env.registry, "single", { web: appA.ref });
    assert.ok(app.layersMeta, "layers[1] is read back as layers meta");
    assert.deepEqual(manifest.layers[1].annotations, { "layers-meta": "v1" });
    assert.equal(manifest.layers[1].mediaType, "application/json");
    assert.equal(output.layersMeta.digest, app.layersMeta.digest);
    const bytes = await registryGet(env.registry, `lm/single/blobs/${app.layersMeta.digest}`);
    assert.equal(bytes.length, app.layersMeta.size);
    const meta = parseLayersMeta(bytes);
    assert.deepEqual(Object.keys(meta), ["amd64"]);
    assert.equal(meta.amd64.fs_block_size, 4096);
    const sorted = [...appA.layers].sort((a, b) => a.digest < b.digest ? -1 : 1);
    assert.deepEqual(
      Object.keys(meta.amd64.layers),
      sorted.map((layer) => layer.digest),
      "sorted as Go maps",
    );
    for (const layer of appA.layers) {
      const measured = meta.amd64.layers[layer.digest];
      assert.deepEqual(Object.keys(measured), ["size", "usage", "archive_size"]);
      assert.equal(measured.archive_size, layer.size);
      assert.ok(measured.usage >= measured.size && measured.usage % 4096 === 0, JSON.stringify(measured));
    }
    const sum = (layers: { digest: string }[], arch: string) =>
      layers.reduce((total, layer) => total + meta[arch].layers[layer.digest].size, 0);
    assert.equal(
      sum(appA.layers, "amd64"),
      await engineSize(env.dockerHost, appA.ref.replace(/^[^/]+\//, "")),
    );

    // A manifest list: one entry per linux platform; arm64 is app-b's content, as makeMulti annotated it.
    const listed = await publish(env.registry, "multi", { web: multi.ref });
    const multiMeta = parseLayersMeta(
      await registryGet(env.registry, `lm/multi/blobs/${listed.app.layersMeta!.digest}`),
    );
    assert.deepEqual(Object.keys(multiMeta), ["amd64", "arm64"]);
    assert.deepEqual(
      multiMeta.amd64,
      meta.amd64,
      "the amd64 child is app-a: the same layers, the same figures",
    );
    const armLayers = Object.keys(multiMeta.arm64.layers).map((digest) => ({ digest }));
    const appB = env.images.appB;
    assert.deepEqual(armLayers.map((l) => l.digest).sort(), appB.layers.map((l) => l.digest).sort());
    const armSum = armLayers.reduce((total, layer) => total + multiMeta.arm64.layers[layer.digest].size, 0);
    assert.equal(armSum, await engineSize(env.dockerHost, appB.ref.replace(/^[^/]+\//, "")));

    // Two images: only the archs both have (composeapp's rule), each shared layer once.
    const both = await publish(env.registry, "both", { web: appA.ref, api: multi.ref });
    const bothMeta = parseLayersMeta(
      await registryGet(env.registry, `lm/both/blobs/${both.app.layersMeta!.digest}`),
    );
    assert.deepEqual(bothMeta, meta);

    // --no-layers-meta: the manifest composectl writes without a layers-meta file.
    const none = await publish(env.registry, "none", { web: appA.ref }, "--no-layers-meta");
    assert.equal(none.app.layersMeta, undefined);
    assert.equal(none.manifest.layers.length, 1);
    // What measuring costs: every layer read once (the big image's 40 MiB of random data).
    await publish(env.registry, "big-none", { web: env.images.big.ref }, "--no-layers-meta");
    await publish(env.registry, "big", { web: env.images.big.ref });
  },
});

Deno.test({
  name: "publish --layers-meta FILE filters a factory's file as composectl does; a layer it lacks is refused",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA } = env.images;
    const dir = await scratchDir("lm-file-");
    const factory: Record<string, unknown> = {};
    for (const layer of appA.layers) factory[layer.digest] = { size: 1000, usage: 4096 };
    factory[`sha256:${"e".repeat(64)}`] = { size: 1, usage: 4096 };
    await Deno.writeTextFile(
      `${dir}/lm.json`,
      JSON.stringify({ amd64: { fs_block_size: 4096, layers: factory } }),
    );
    const { app } = await publish(env.registry, "file", { web: appA.ref }, "--layers-meta", `${dir}/lm.json`);
    const meta = parseLayersMeta(await registryGet(env.registry, `lm/file/blobs/${app.layersMeta!.digest}`));
    assert.deepEqual(Object.keys(meta.amd64.layers).sort(), appA.layers.map((l) => l.digest).sort());
    for (const layer of appA.layers) {
      assert.deepEqual(meta.amd64.layers[layer.digest], {
        size: 1000,
        usage: 4096,
        archive_size: layer.size,
      });
    }
    delete factory[appA.layers[0].digest];
    await Deno.writeTextFile(
      `${dir}/lm.json`,
      JSON.stringify({ amd64: { fs_block_size: 4096, layers: factory } }),
    );
    const project = await scratchDir("lm-file-project-");
    await writeProject(project, { web: appA.ref });
    const refused = await runBerth([
      "publish",
      "--layers-meta",
      `${dir}/lm.json`,
      project,
      `${env.registry}/lm/x:1`,
    ]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /is not in the layers meta/);
  },
});

Deno.test({
  name: "pre-flight of a pull of the published app counts the measured usage, not the estimate",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA } = env.images;
    const { app } = await publish(env.registry, "preflight", { web: appA.ref });
    const store = await Store.open(await scratchDir("lm-store-"), { write: true, command: "test" });
    const client = new RegistryClient();
    let full: PullPlan | undefined;
    class Planned extends Error {}
    try {
      await assert.rejects(
        pull(client, store, [parseReference(`${env.registry}/lm/preflight:1`)], {
          readArtifact: readAppArtifact,
          limits: DEFAULT_BLOB_LIMITS,
          platform: { os: "linux", architecture: "amd64" },
          parallel: 1,
          preflight: (plan) => {
            if (plan.partial) return Promise.resolve();
            full = plan;
            return Promise.reject(new Planned());
          },
        }),
        Planned,
      );
      const ref = full!.refs[0];
      assert.equal(ref.layersMetaDigest, app.layersMeta!.digest);
      const usage = parseLayerUsage(await store.readBlob(ref.layersMetaDigest!), "amd64");
      assert.equal(usage.size, appA.layers.length);
      const measured = [...usage.values()].reduce((total, bytes) => total + bytes, 0);
      assert.equal(unpackedBytes(ref.images, usage), measured);
      const estimate = appA.layers.reduce(
        (total, layer) => total + Math.round(layer.size * UNPACK_ESTIMATE_FACTOR),
        0,
      );
      assert.equal(unpackedBytes(ref.images, new Map()), estimate);
      console.log(`engine need for app-a: measured ${measured} bytes, estimate ${estimate} bytes`);
    } finally {
      store.close();
      await client.close?.();
    }
  },
});

Deno.test({
  name: "a layer the registry serves corrupt fails the publish, naming the layer; no app is pushed",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const proxy = await startFaultProxy(env.registry);
    try {
      const { big } = env.images;
      const layer = big.layers.at(-1)!;
      proxy.addFault({ digest: layer.digest, kind: "flip-bit" });
      const dir = await scratchDir("lm-corrupt-");
      await writeProject(dir, { web: big.ref.replace(env.registry, proxy.host) });
      const result = await runBerth(["publish", dir, `${proxy.host}/lm/corrupt:1`]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`layer ${layer.digest} of berth-test/big`));
      const manifest = await fetch(`http://${env.registry}/v2/lm/corrupt/manifests/1`);
      await manifest.body?.cancel();
      assert.equal(manifest.status, 404);
    } finally {
      await proxy.close();
    }
  },
});
