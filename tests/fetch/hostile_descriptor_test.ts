/**
 * Descriptors from a registry are hostile until checked: a digest is exactly `sha256:` and 64 lowercase hex
 * digits and a size a whole number of bytes, in every manifest, index and app manifest, before anything is
 * written — and a digest never becomes a path outside the store. The real registry refuses to store such
 * manifests, so the fault proxy in front of it serves them; everything else comes from the real registry.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, snapshotTree, testEnv, withServices } from "../harness/env.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { writeProject } from "../harness/projects.ts";
import { MANIFEST_ACCEPT } from "../harness/images.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const encoder = new TextEncoder();

async function registryJson(registry: string, path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`http://${registry}${path}`, { headers: { Accept: MANIFEST_ACCEPT } });
  assert.equal(response.status, 200, path);
  return await response.json();
}

function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line expected, got: ${stderr}`);
  assert.match(lines[0], pattern);
}

Deno.test({
  name:
    "hostile digests and sizes in app manifests, image manifests and indexes are refused before anything " +
    "is written: no directory outside the store is touched, the store stays as it was and passes fsck",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const work = await scratchDir("hostile-descriptor-");
    // What a path traversal would delete and replace: a directory beside the store.
    const victim = `${work}/victim`;
    await Deno.mkdir(victim);
    await Deno.writeTextFile(`${victim}/precious`, "keep me\n");
    const store = `${work}/store`;
    const seeded = await runBerth(["--store", store, "pull", env.images.base.ref]);
    assert.equal(seeded.code, 0, seeded.stderr);
    const before = await snapshotTree(store);

    const project = `${work}/project`;
    await Deno.mkdir(project);
    await writeProject(project, { web: env.images.base.ref });
    const appRef = `${env.registry}/berth-test/hostile-app:1`;
    // Without layers meta: each hostile variant adds its own layers[1].
    const published = await runBerth(["publish", "--no-layers-meta", project, appRef]);
    assert.equal(published.code, 0, published.stderr);
    const app = await registryJson(env.registry, "/v2/berth-test/hostile-app/manifests/1") as {
      layers: Record<string, unknown>[];
    };
    const image = await registryJson(env.registry, `/v2/berth-test/app-a/manifests/1`) as {
      config: Record<string, unknown>;
      layers: Record<string, unknown>[];
    };

    const proxy = await startFaultProxy(env.registry);
    // The distance to the victim from blobs/sha256 and from ingest/: whichever the code joins it to.
    const traversal = `sha256:../../../${"../".repeat(work.split("/").length)}${victim.slice(1)}`;
    const serve = (path: string, contentType: string, value: unknown) =>
      proxy.overrideResponse(path, { contentType, body: encoder.encode(JSON.stringify(value)) });
    const appWith = (change: (manifest: typeof app) => void) => {
      const copy = structuredClone(app);
      change(copy);
      return copy;
    };
    const imageWith = (change: (manifest: typeof image) => void) => {
      const copy = structuredClone(image);
      change(copy);
      return copy;
    };
    const cases: [string, string, unknown, RegExp][] = [
      [
        "hostile-app",
        OCI_MANIFEST,
        appWith((m) =>
          m.layers.push({ mediaType: "application/json", digest: traversal, size: 12, annotations: {} })
        ),
        /hostile-app:1 manifest sha256:[0-9a-f]{64} layers\[1\]\.digest: "sha256:\.\.\/.*" is not a valid digest/,
      ],
      [
        // The attack as found: a third layer, which the app manifest parser did not look at but the pull
        // fetched, whose digest led the ingest out of the store (its directory removed, bytes written there).
        "third-layer-traversal",
        OCI_MANIFEST,
        appWith((m) =>
          m.layers.push(
            { mediaType: "application/json", digest: `sha256:${"5".repeat(64)}`, size: 2, annotations: {} },
            { mediaType: "application/json", digest: traversal, size: 12 },
          )
        ),
        /third-layer-traversal:1 manifest sha256:[0-9a-f]{64}: layers\[2\] \("sha256:\.\.\/.*…?"\) is not part of a compose app/,
      ],
      [
        "three-layers",
        OCI_MANIFEST,
        appWith((m) =>
          m.layers.push(
            { mediaType: "application/json", digest: `sha256:${"1".repeat(64)}`, size: 2, annotations: {} },
            { mediaType: "application/json", digest: `sha256:${"2".repeat(64)}`, size: 2 },
          )
        ),
        /three-layers:1 manifest sha256:[0-9a-f]{64}: layers\[2\] \("sha256:2{64}"\) is not part of a compose app/,
      ],
      [
        "bundle-size",
        OCI_MANIFEST,
        appWith((m) => m.layers[0].size = -5),
        /bundle-size:1 manifest .* layers\[0\]\.size: -5 is not a size in bytes/,
      ],
      [
        "layer-traversal",
        DOCKER_MANIFEST,
        imageWith((m) => m.layers[0].digest = traversal),
        /layer-traversal:1 manifest .* layers\[0\]\.digest: "sha256:\.\.\/.*" is not a valid digest/,
      ],
      [
        "config-upper",
        DOCKER_MANIFEST,
        imageWith((m) => m.config.digest = `sha256:${"A".repeat(64)}`),
        /config-upper:1 manifest .* config\.digest: "sha256:A{64}" is not a valid digest/,
      ],
      [
        "layer-encoded",
        DOCKER_MANIFEST,
        imageWith((m) => m.layers[0].digest = `sha256:..%2f..%2f${"a".repeat(58)}`),
        /layer-encoded:1 .* layers\[0\]\.digest: "sha256:\.\.%2f\.\.%2fa+" is not a valid digest/,
      ],
      [
        "layer-nul",
        DOCKER_MANIFEST,
        imageWith((m) => m.layers[0].digest = `sha256:${"a".repeat(63)}\u0000`),
        /layer-nul:1 .* layers\[0\]\.digest: "sha256:a{63}\\u0000" is not a valid digest/,
      ],
      [
        "layer-sha512",
        DOCKER_MANIFEST,
        imageWith((m) => m.layers[0].digest = `sha512:${"a".repeat(64)}`),
        /layer-sha512:1 .* layers\[0\]\.digest: .* is not a valid digest|digest algorithm of "sha512/,
      ],
      [
        "size-fraction",
        DOCKER_MANIFEST,
        imageWith((m) => m.layers[0].size = 10.5),
        /size-fraction:1 .* layers\[0\]\.size: 10\.5 is not a size in bytes/,
      ],
      [
        "size-huge",
        DOCKER_MANIFEST,
        imageWith((m) => m.layers[0].size = 2 ** 60),
        /size-huge:1 .* layers\[0\]\.size: 1152921504606847000 is not a size in bytes/,
      ],
      [
        "size-string",
        DOCKER_MANIFEST,
        imageWith((m) => m.layers[0].size = "100"),
        /size-string:1 .* layers\[0\]\.size: "100" is not a size in bytes/,
      ],
      [
        "config-huge",
        DOCKER_MANIFEST,
        imageWith((m) => m.config.size = 200_000_000),
        /config-huge:1 manifest .* config: sha256:[0-9a-f]{64} declares 200000000 bytes, over the 8388608-byte limit \(limits\.imageConfig in the config file\)/,
      ],
      [
        "meta-huge",
        OCI_MANIFEST,
        appWith((m) =>
          m.layers.push({
            mediaType: "application/json",
            digest: `sha256:${"4".repeat(64)}`,
            size: 500_000_000,
            annotations: { "layers-meta": "v1" },
          })
        ),
        /meta-huge:1 manifest .* layers meta: sha256:4{64} declares 500000000 bytes, over the 16777216-byte limit \(limits\.layersMeta/,
      ],
      [
        "index-traversal",
        OCI_INDEX,
        {
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [{
            mediaType: OCI_MANIFEST,
            digest: traversal,
            size: 500,
            platform: { os: "linux", architecture: "amd64" },
          }],
        },
        /index-traversal:1 manifests\[0\]\.digest: "sha256:\.\.\/.*" is not a valid digest/,
      ],
      [
        "index-platform",
        OCI_INDEX,
        {
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [{
            mediaType: OCI_MANIFEST,
            digest: `sha256:${"3".repeat(64)}`,
            size: 500,
            platform: { os: 7, architecture: "amd64" },
          }],
        },
        /index-platform:1 manifests\[0\]\.platform\.os: 7 is not a platform name/,
      ],
    ];
    for (const [repository, contentType, body] of cases) {
      serve(`/v2/berth-test/${repository}/manifests/1`, contentType, body);
    }
    for (const [repository, , , pattern] of cases) {
      const ref = `${proxy.host}/berth-test/${repository}:1`;
      for (const command of ["pull", "check"]) {
        const result = await runBerth(["--store", store, command, ref]);
        assert.equal(result.code, 1, `${command} ${ref}: ${result.stderr}`);
        assertOneLine(result.stderr, pattern);
      }
    }
    // Only manifests were asked for: no blob of a refused reference was fetched.
    const blobRequests = proxy.stats.requests.filter((request) => request.path.includes("/blobs/"));
    assert.deepEqual(blobRequests, [], "no blob requested");
    await proxy.close();

    assert.deepEqual(await Array.fromAsync(Deno.readDir(victim), (entry) => entry.name), ["precious"]);
    assert.equal(await Deno.readTextFile(`${victim}/precious`), "keep me\n");
    assert.deepEqual(await snapshotTree(store), before, "the store is untouched");
    const fsck = await runBerth(["--store", store, "fsck"]);
    assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    await Deno.remove(work, { recursive: true });
  },
});
