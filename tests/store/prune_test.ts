/** The store's reachability walk (store/prune.ts), over blobs held in memory. */
import assert from "node:assert/strict";
import { entryRoots, reachableBlobs } from "../../src/store/prune.ts";
import { MANIFEST_DIGEST, SOURCE_DIGEST } from "../../src/store/annotations.ts";

const d = (name: string) => `sha256:${name.padEnd(64, "0")}`;

Deno.test("reachableBlobs: entry → wrapper → manifest → config and layers; served index; app bundle index", async () => {
  const blobs = new Map<string, unknown>([
    // a wrapper index around a Docker manifest, as pull writes for Docker v2 images
    [d("a1"), { schemaVersion: 2, manifests: [{ digest: d("a2"), mediaType: "m" }] }],
    [d("a2"), { config: { digest: d("a3") }, layers: [{ digest: d("a4") }, { digest: d("a5") }] }],
    // a served two-platform index: only one child is stored
    [d("b0"), { manifests: [{ digest: d("b1") }, { digest: d("c9") }] }],
    [d("b1"), { config: { digest: d("b2") }, layers: [{ digest: d("b3") }] }],
    // an app manifest naming its bundle index by annotation
    [d("e1"), {
      config: { digest: d("e2") },
      layers: [{ digest: d("e3"), annotations: { "org.foundries.app.bundle.index.digest": d("e4") } }],
      annotations: { "compose-app": "v1", note: "sha256:not-a-digest" },
    }],
  ]);
  const reads: string[] = [];
  const readJson = (digest: string) => {
    reads.push(digest);
    return Promise.resolve(blobs.get(digest));
  };
  const roots = [
    ...entryRoots({
      mediaType: "index",
      digest: d("a1"),
      size: 1,
      annotations: { [MANIFEST_DIGEST]: d("a2") },
    }),
    ...entryRoots({
      mediaType: "manifest",
      digest: d("b1"),
      size: 1,
      annotations: { [SOURCE_DIGEST]: d("b0"), [MANIFEST_DIGEST]: d("b1") },
    }),
    { digest: d("e1") },
  ];
  const reached = await reachableBlobs(roots, readJson);
  for (const name of ["a1", "a2", "a3", "a4", "a5", "b0", "b1", "b2", "b3", "e1", "e2", "e3"]) {
    assert.ok(reached.has(d(name)), `${name} reached`);
  }
  // The bundle index, named by an annotation on the bundle's layer descriptor.
  assert.ok(reached.has(d("e4")), "bundle index reached");
  assert.equal(reached.has("sha256:not-a-digest"), false);
  // Configs and layers are never read.
  for (const leaf of ["a3", "a4", "a5", "b2", "b3", "e2", "e3"]) assert.ok(!reads.includes(d(leaf)), leaf);
  // A blob nothing names is not reached.
  assert.equal(reached.has(d("f1")), false);
});
