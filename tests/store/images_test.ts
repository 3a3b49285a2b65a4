/** The store's record of a tag, as the agent reads it when the registry is out of reach. */
import assert from "node:assert/strict";
import { Store } from "../../src/store/store.ts";
import { storedTagDigest } from "../../src/store/images.ts";
import { MANIFEST_DIGEST, PULLED_AT, REF_NAME, SOURCE_DIGEST } from "../../src/store/annotations.ts";

Deno.test("storedTagDigest: the tag's entry stands in only when it was written after the installed version", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-images-" });
  const store = await Store.open(`${dir}/store`, { write: true, command: "test" });
  try {
    const digest = `sha256:${"a".repeat(64)}`;
    const ref = "registry.example/fleet/shop:stable";
    await store.updateIndex(() => [{
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest,
      size: 10,
      annotations: {
        [REF_NAME]: ref,
        [SOURCE_DIGEST]: digest,
        [MANIFEST_DIGEST]: digest,
        [PULLED_AT]: "2026-06-01T12:00:00.000Z",
      },
    }]);
    assert.equal(await storedTagDigest(store, ref), digest, "nothing installed: the entry stands in");
    assert.equal(await storedTagDigest(store, ref, "2026-06-01T11:00:00.000Z"), digest, "written after");
    assert.equal(
      await storedTagDigest(store, ref, "2026-06-01T13:00:00.000Z"),
      undefined,
      "older: never back",
    );
    assert.equal(await storedTagDigest(store, "registry.example/fleet/shop:other"), undefined);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
