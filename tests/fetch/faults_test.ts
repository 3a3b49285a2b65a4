/**
 * Faults on the wire, injected by a proxy in front of the real registry: corrupt and truncated bodies never
 * land in the store, dropped connections resume with a Range request in the same run, and a registry that
 * ignores Range or answers 503 is still pulled correctly.
 */
import assert from "node:assert/strict";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

const blobPath = (store: string, digest: string) => `${store}/blobs/sha256/${digest.slice("sha256:".length)}`;
const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

async function withProxy(fn: (proxy: Awaited<ReturnType<typeof startFaultProxy>>) => Promise<void>) {
  const proxy = await startFaultProxy(testEnv()!.registry);
  try {
    await fn(proxy);
  } finally {
    await proxy.close();
  }
}

const ref = (name: "appA" | "big" | "appC", proxyHost: string) =>
  testEnv()!.images[name].ref.replace(testEnv()!.registry, proxyHost);

Deno.test({
  name: "a blob with a flipped bit never lands in blobs/, and the error names its digest",
  ...withServices,
  fn: () =>
    withProxy(async (proxy) => {
      const layer = testEnv()!.images.appA.layers[1];
      proxy.addFault({ digest: layer.digest, kind: "flip-bit", times: Infinity });
      const store = await scratchDir("flip-");
      const result = await runBerth(["--store", store, "pull", ref("appA", proxy.host)]);
      assert.equal(result.code, 1);
      const lastLine = result.stderr.trim().split("\n").at(-1)!;
      assert.match(lastLine, new RegExp(`^berth: blob ${layer.digest}: content hashes to sha256:`));
      assert.equal(await exists(blobPath(store, layer.digest)), false);
      assert.equal(
        await Deno.readTextFile(`${store}/index.json`).then((text) => JSON.parse(text).manifests.length),
        0,
      );
      assert.deepEqual(
        await Array.fromAsync(Deno.readDir(`${store}/ingest`)),
        [],
        "the corrupt download is discarded",
      );
    }),
});

Deno.test({
  name: "a single corrupt answer is retried from byte 0 and the pull completes",
  ...withServices,
  fn: () =>
    withProxy(async (proxy) => {
      const layer = testEnv()!.images.appA.layers[1];
      proxy.addFault({ digest: layer.digest, kind: "flip-bit", times: 1 });
      const store = await scratchDir("flip-once-");
      const result = await runBerth(["--store", store, "pull", ref("appA", proxy.host)]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /retrying from byte 0/);
      assert.equal((await runBerth(["--store", store, "fsck"])).code, 0);
    }),
});

Deno.test({
  name: "a truncated body is not committed: it resumes, and one that never arrives fails naming the digest",
  ...withServices,
  fn: () =>
    withProxy(async (proxy) => {
      const layer = testEnv()!.images.appC.layers[1];
      const cut = Math.floor(layer.size / 2);
      proxy.addFault({ digest: layer.digest, kind: "truncate", atByte: cut, times: 1 });
      const store = await scratchDir("truncate-");
      const result = await runBerth(["--store", store, "pull", ref("appC", proxy.host)]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, new RegExp(`retrying from byte ${cut}`));
      assert.equal((await runBerth(["--store", store, "fsck"])).code, 0);

      proxy.clearFaults();
      const other = testEnv()!.images.appA.layers[1];
      proxy.addFault({ digest: other.digest, kind: "truncate", atByte: 0, times: Infinity });
      const failed = await runBerth(["--store", store, "pull", ref("appA", proxy.host)]);
      assert.equal(failed.code, 1);
      assert.ok(failed.stderr.trim().split("\n").at(-1)!.includes(other.digest), failed.stderr);
      assert.equal(await exists(blobPath(store, other.digest)), false);
    }),
});

Deno.test({
  name: "a connection dropped mid-blob resumes with a Range request in the same run",
  ...withServices,
  fn: () =>
    withProxy(async (proxy) => {
      const layer = testEnv()!.images.big.layers.find((candidate) => candidate.size > 8 * 1024 * 1024)!;
      const dropAt = 3 * 1024 * 1024 + 17;
      proxy.addFault({ digest: layer.digest, kind: "drop", atByte: dropAt, times: 1 });
      const store = await scratchDir("drop-");
      const result = await runBerth(["--store", store, "pull", ref("big", proxy.host)]);
      assert.equal(result.code, 0, result.stderr);
      const ranged = proxy.stats.requests.filter((request) =>
        request.path.endsWith(layer.digest) && request.range
      );
      assert.equal(ranged.length, 1, JSON.stringify(proxy.stats.requests));
      assert.equal(ranged[0].range, `bytes=${dropAt}-${layer.size - 1}`);
      assert.equal(ranged[0].status, 206);
      // The bytes before the drop were not fetched again.
      assert.equal(proxy.stats.blobBytes.get(layer.digest), layer.size);
      assert.equal((await runBerth(["--store", store, "fsck"])).code, 0);
    }),
});

Deno.test({
  name: "a registry that ignores Range has the prefix discarded, not appended",
  ...withServices,
  fn: () =>
    withProxy(async (proxy) => {
      const layer = testEnv()!.images.big.layers.find((candidate) => candidate.size > 8 * 1024 * 1024)!;
      proxy.addFault({ digest: layer.digest, kind: "drop", atByte: 1024 * 1024, times: 1 });
      proxy.addFault({ digest: layer.digest, kind: "ignore-range", times: Infinity });
      const store = await scratchDir("ignore-range-");
      const result = await runBerth(["--store", store, "pull", ref("big", proxy.host)]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal((await runBerth(["--store", store, "fsck"])).code, 0);
    }),
});

Deno.test({
  name: "503 answers are retried with backoff",
  ...withServices,
  fn: () =>
    withProxy(async (proxy) => {
      const layer = testEnv()!.images.appA.layers[2];
      proxy.addFault({ digest: layer.digest, kind: "status", status: 503, times: 2 });
      const store = await scratchDir("503-");
      const result = await runBerth(["--store", store, "pull", ref("appA", proxy.host)]);
      assert.equal(result.code, 0, result.stderr);
      const answers = proxy.stats.requests.filter((request) => request.path.endsWith(layer.digest));
      assert.deepEqual(answers.map((request) => request.status), [503, 503, 200]);
    }),
});
