/**
 * Layers meta (layers[1] of an app manifest) is known by its `layers-meta: v1` annotation, as devices know
 * it: its media type is whatever the publisher's registry answered for the blob, which may be nothing at
 * all. Apps whose layers meta has no media type, an empty one, or an unexpected one are pushed to the real
 * registry; berth pulls them (the layers meta blob included, checked against its digest and size) and
 * installs them. A layers meta that does not match its blob is still refused.
 */
import assert from "node:assert/strict";
import { startDockerd } from "../harness/services.ts";
import { deviceBerth, runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";
import { MANIFEST_ACCEPT } from "../harness/images.ts";
import { RegistryPusher } from "../../src/registry/push.ts";
import { parseReference } from "../../src/oci/reference.ts";
import { OCI_MANIFEST } from "../../src/oci/mediatypes.ts";
import { sha256Of } from "../../src/oci/digest.ts";

interface Layer {
  mediaType?: unknown;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

Deno.test({
  name: "an app whose layers meta has no media type, an empty or an unexpected one is pulled and installed",
  ...withServices,
  async fn(t) {
    const env = testEnv()!;
    const { base } = env.images;
    const project = await scratchDir("meta-project-");
    await writeProject(project, { web: base.ref });
    const published = await runBerth([
      "publish",
      "--no-layers-meta",
      project,
      `${env.registry}/meta-compat/shop:plain`,
    ]);
    assert.equal(published.code, 0, published.stderr);
    const response = await fetch(`http://${env.registry}/v2/meta-compat/shop/manifests/plain`, {
      headers: { Accept: MANIFEST_ACCEPT },
    });
    assert.equal(response.status, 200);
    const plain = await response.json() as { layers: Layer[] };
    assert.equal(plain.layers.length, 1, "--no-layers-meta: no layers[1]; each case adds its own");

    // The layers meta of the app's one image, as composectl filters it from the factory's file.
    const meta = new TextEncoder().encode(JSON.stringify({
      amd64: {
        fs_block_size: 4096,
        layers: Object.fromEntries(
          base.layers.map((layer) => [layer.digest, { size: 3 * layer.size, usage: 4 * layer.size }]),
        ),
      },
    }));
    const metaDigest = sha256Of(meta);
    const pusher = new RegistryPusher();
    const dir = await scratchDir("meta-device-");
    const dockerd = await startDockerd(`${await scratchDir("meta-engine-")}/engine`);
    const berth = deviceBerth(dir, dockerd.host);
    try {
      await pusher.pushBlob(parseReference(`${env.registry}/meta-compat/shop:plain`), metaDigest, meta);
      const pushVariant = async (tag: string, layer: Layer) => {
        const manifest = structuredClone(plain);
        manifest.layers.push(layer);
        const ref = `${env.registry}/meta-compat/shop:${tag}`;
        await pusher.pushManifest(
          parseReference(ref),
          new TextEncoder().encode(JSON.stringify(manifest, null, 3)),
          OCI_MANIFEST,
        );
        return ref;
      };
      const annotations = { "layers-meta": "v1" };
      const cases: [string, Layer][] = [
        ["no media type", { digest: metaDigest, size: meta.length, annotations }],
        ["an empty media type", { mediaType: "", digest: metaDigest, size: meta.length, annotations }],
        [
          "an unexpected media type",
          { mediaType: "text/plain; charset=utf-8", digest: metaDigest, size: meta.length, annotations },
        ],
      ];
      for (const [index, [name, layer]] of cases.entries()) {
        await t.step(name, async () => {
          const ref = await pushVariant(`meta${index}`, layer);
          const pulled = await berth("pull", ref);
          assert.equal(pulled.code, 0, pulled.stderr);
          assert.ok(
            (await Deno.stat(`${dir}/store/blobs/sha256/${metaDigest.slice(7)}`)).isFile,
            "the layers meta blob was fetched",
          );
          const installed = await berth("--json", "install", ref);
          assert.equal(installed.code, 0, installed.stderr);
          assert.equal(JSON.parse(installed.stdout).digest, sha256Of(await manifestBytes(ref)));
          const listed = JSON.parse((await berth("--json", "ls")).stdout);
          const shop = listed.apps.find((app: { name: string }) => app.name === "shop");
          assert.equal(shop.installedRef, ref);
        });
      }

      await t.step(
        "without a media type, a layers meta that does not match its blob is refused",
        async () => {
          const ref = await pushVariant("lying", { digest: metaDigest, size: meta.length + 1, annotations });
          // A store of its own: the blob must be fetched to be checked.
          const refused = await deviceBerth(await scratchDir("meta-lying-"), dockerd.host)("pull", ref);
          assert.equal(refused.code, 1, refused.stdout);
          // The blob ends before the declared size: the download fails, naming it.
          assert.match(refused.stderr, new RegExp(`^berth: blob ${metaDigest} of `, "m"));
        },
      );
      const fsck = await berth("fsck");
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    } finally {
      await pusher.close();
      await dockerd.stop();
    }
  },
});

/** The manifest bytes the registry serves for `ref`. */
async function manifestBytes(ref: string): Promise<Uint8Array> {
  const { registry, repository, tag } = parseReference(ref);
  const response = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    headers: { Accept: MANIFEST_ACCEPT },
  });
  return new Uint8Array(await response.arrayBuffer());
}
