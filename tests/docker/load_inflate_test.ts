/**
 * Gzip layers are sent inflated by berth, as a tar of the size the gzip trailer states. A layer of two
 * concatenated gzip members (valid gzip, as pigz --independent or eStargz write; its trailer states only the
 * last member's size) cannot be sent that way: the load falls back to sending the layer as stored, and the
 * engine inflates it. The image is built as an OCI layout by hand and pushed with skopeo.
 */
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { sha256Of } from "../../src/oci/digest.ts";
import { gzip } from "../../src/util/gzip.ts";

/** Writes one blob into an OCI layout's blobs/sha256 and returns its descriptor. */
async function writeBlob(dir: string, bytes: Uint8Array, mediaType: string) {
  const digest = sha256Of(bytes);
  await Deno.writeFile(`${dir}/blobs/sha256/${digest.slice(7)}`, bytes);
  return { mediaType, digest, size: bytes.length };
}

Deno.test({
  name: "a layer of two gzip members is loaded all the same: sent as stored when it cannot be sent inflated",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("load-inflate-");
    const layout = `${dir}/layout`;
    await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
    const root = `${dir}/root`;
    await Deno.mkdir(`${root}/data`, { recursive: true });
    const text = "berth inflates layers beside the engine\n".repeat(5000);
    await Deno.writeTextFile(`${root}/data/a.txt`, text);
    await Deno.writeTextFile(`${root}/data/b.txt`, text.toUpperCase());
    await run(["tar", "-C", root, "--owner=0", "--group=0", "-cf", `${dir}/layer.tar`, "data"]);
    const tar = await Deno.readFile(`${dir}/layer.tar`);
    const half = Math.floor(tar.length / 2);
    const first = await gzip(tar.subarray(0, half));
    const second = await gzip(tar.subarray(half));
    const layerBytes = new Uint8Array(first.length + second.length);
    layerBytes.set(first);
    layerBytes.set(second, first.length);

    const layer = await writeBlob(layout, layerBytes, "application/vnd.oci.image.layer.v1.tar+gzip");
    const config = await writeBlob(
      layout,
      new TextEncoder().encode(JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: {},
        rootfs: { type: "layers", diff_ids: [sha256Of(tar)] },
      })),
      "application/vnd.oci.image.config.v1+json",
    );
    const manifest = await writeBlob(
      layout,
      new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config,
        layers: [layer],
      })),
      "application/vnd.oci.image.manifest.v1+json",
    );
    await Deno.writeTextFile(`${layout}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await Deno.writeTextFile(
      `${layout}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": "1" } }],
      }),
    );
    const ref = `${env.registry}/berth-test/two-members:1`;
    await run(["skopeo", "copy", "-q", "--dest-tls-verify=false", `oci:${layout}:1`, `docker://${ref}`]);

    const dockerd = await startDockerd(`${await scratchDir("load-inflate-engine-")}/engine`);
    try {
      const store = `${dir}/store`;
      const pulled = await runBerth(["--store", store, "pull", ref]);
      assert.equal(pulled.code, 0, pulled.stderr);
      const loaded = await runBerth(["--store", store, "--docker-host", dockerd.host, "load", ref]);
      assert.equal(loaded.code, 0, loaded.stderr);
      assert.match(loaded.stdout, new RegExp(`Loaded ${ref} as image ${config.digest}`));
      const inspected = JSON.parse(
        await run(["docker", "-H", dockerd.host, "image", "inspect", config.digest]),
      )[0];
      assert.deepEqual(inspected.RootFS.Layers, [sha256Of(tar)]);
    } finally {
      await dockerd.stop();
    }
  },
});
