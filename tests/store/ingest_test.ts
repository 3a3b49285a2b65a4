/** What a partial download keeps on resume: the figure a pull's plan counts and the offset it resumes at. */
import assert from "node:assert/strict";
import { ingestPaths, resumableBytes } from "../../src/store/ingest.ts";
import { currentBootId } from "../../src/store/boot_id.ts";
import { Store } from "../../src/store/store.ts";

const DIGEST = `sha256:${"ab".repeat(32)}`;
const SIZE = 1000;

async function withIngest(
  data: number,
  state: Record<string, unknown> | undefined,
  fn: (store: Store) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const store = await Store.open(`${dir}/store`, { write: true, command: "test" });
  try {
    const paths = ingestPaths(store.ingestDir, DIGEST);
    await Deno.mkdir(paths.dir, { recursive: true });
    await Deno.writeFile(paths.data, new Uint8Array(data));
    if (state) {
      await Deno.writeTextFile(
        paths.state,
        JSON.stringify({ digest: DIGEST, size: SIZE, updatedAt: new Date().toISOString(), ...state }),
      );
    }
    await fn(store);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a crash in this boot keeps every byte written; the writer resumes there", async () => {
  await withIngest(600, { checkpoint: 200, bootId: currentBootId() }, async (store) => {
    const expected = currentBootId() === "unknown" ? 200 : 600;
    assert.equal(await resumableBytes(store.ingestDir, DIGEST, SIZE), expected);
    const writer = await store.ingest(DIGEST, SIZE);
    assert.equal(writer.offset, expected);
    await writer.close();
  });
});

Deno.test("after a reboot only the checkpoint counts; the writer resumes there", async () => {
  await withIngest(600, { checkpoint: 200, bootId: "another-boot" }, async (store) => {
    assert.equal(await resumableBytes(store.ingestDir, DIGEST, SIZE), 200);
    const writer = await store.ingest(DIGEST, SIZE);
    assert.equal(writer.offset, 200);
    await writer.close();
  });
});

Deno.test("no state, another blob's state or more bytes than the blob: nothing is kept", async () => {
  await withIngest(600, undefined, async (store) => {
    assert.equal(await resumableBytes(store.ingestDir, DIGEST, SIZE), 0);
  });
  await withIngest(600, { checkpoint: 600, bootId: currentBootId(), size: 999 }, async (store) => {
    assert.equal(await resumableBytes(store.ingestDir, DIGEST, SIZE), 0);
  });
  await withIngest(1200, { checkpoint: 1200, bootId: currentBootId() }, async (store) => {
    assert.equal(await resumableBytes(store.ingestDir, DIGEST, SIZE), 0);
    const writer = await store.ingest(DIGEST, SIZE);
    assert.equal(writer.offset, 0);
    await writer.close();
  });
  // No ingest at all.
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await resumableBytes(dir, DIGEST, SIZE), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
