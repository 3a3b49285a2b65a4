/**
 * A pull plans before it downloads: the `planned` event's figures are exact (a partial download counts
 * what a resume keeps), and the storage pre-flight stops a pull that does not fit before any blob is
 * fetched — on a real tmpfs, against the real registry — and lets the same pull through once there is room.
 */
import { DEFAULT_BLOB_LIMITS } from "../../src/config/defaults.ts";
import { readAppArtifact } from "../../src/app/artifact.ts";
import assert from "node:assert/strict";
import { run } from "../harness/services.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { pull, type PullEvent, type PullPlan } from "../../src/fetch/pull.ts";
import { RegistryClient } from "../../src/registry/client.ts";
import { parseReference } from "../../src/oci/reference.ts";
import { Store } from "../../src/store/store.ts";
import { ingestPaths, readIngestState } from "../../src/store/ingest.ts";
import { checkPlanSpace } from "../../src/fetch/preflight.ts";
import { BerthError } from "../../src/util/errors.ts";
import { DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from "../../src/oci/mediatypes.ts";

const MiB = 1024 * 1024;
const PLATFORM = { os: "linux", architecture: "amd64" };

/** The manifest bytes the registry serves for `repo:tag` (what berth stores and counts). */
async function manifestBytes(registry: string, repo: string, tag: string): Promise<number> {
  const response = await fetch(`http://${registry}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST].join(", ") },
  });
  assert.equal(response.status, 200);
  return (await response.bytes()).length;
}

async function configSize(registry: string, repo: string, tag: string): Promise<number> {
  const response = await fetch(`http://${registry}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: DOCKER_MANIFEST },
  });
  return (await response.json()).config.size;
}

/** Blob files committed in the store (digests), and the ingests in flight. */
async function storeContent(store: string): Promise<{ blobs: Set<string>; ingests: string[] }> {
  const list = async (dir: string) => {
    try {
      return (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
  };
  return {
    blobs: new Set((await list(`${store}/blobs/sha256`)).map((hex) => `sha256:${hex}`)),
    ingests: await list(`${store}/ingest`),
  };
}

/** Stops a pull once planned; carries the plan out. */
class Stop extends Error {
  constructor(readonly plan: PullPlan) {
    super("stop after planning");
  }
}

Deno.test({
  name: "planned: bytesTotal is every blob and manifest; a partial download counts what its resume keeps",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { big } = env.images;
    const storePath = await scratchDir("plan-");
    const client = new RegistryClient();
    const ref = parseReference(big.ref);
    const [largest] = [...big.layers].sort((a, b) => b.size - a.size);
    const manifest = await manifestBytes(env.registry, "berth-test/big", "1");
    const config = await configSize(env.registry, "berth-test/big", "1");
    const bytesTotal = manifest + config + big.layers.reduce((sum, layer) => sum + layer.size, 0);
    try {
      // 1. A pull interrupted 4 MiB into the largest layer leaves a partial download.
      let store = await Store.open(storePath, { write: true, command: "test" });
      const abort = new AbortController();
      await assert.rejects(
        pull(client, store, [ref], {
          readArtifact: readAppArtifact,
          limits: DEFAULT_BLOB_LIMITS,
          platform: PLATFORM,
          parallel: 1,
          signal: abort.signal,
          onEvent: (event) => {
            if (
              event.type === "blob-progress" && event.digest === largest.digest && event.bytesDone >= 4 * MiB
            ) {
              abort.abort(new Error("test: interrupted"));
            }
          },
        }),
        /interrupted/,
      );
      store.close();
      // As after a reboot: another boot id, and only the first MiB checkpointed. A resume keeps 1 MiB (the
      // rest may not have reached the disk), so the plan must count 1 MiB, not the file's length.
      const paths = ingestPaths(`${storePath}/ingest`, largest.digest);
      const held = (await Deno.stat(paths.data)).size;
      assert.ok(held >= 4 * MiB, `the partial holds ${held} bytes`);
      const state = (await readIngestState(paths.state))!;
      await Deno.writeTextFile(
        paths.state,
        JSON.stringify({ ...state, bootId: "another-boot", checkpoint: MiB }) + "\n",
      );

      // 2. Planning alone: the figures, before anything more is downloaded.
      store = await Store.open(storePath, { write: true, command: "test" });
      const planned: PullEvent[] = [];
      const stored = (await storeContent(storePath)).blobs;
      const plan = await pull(client, store, [ref], {
        readArtifact: readAppArtifact,
        limits: DEFAULT_BLOB_LIMITS,
        platform: PLATFORM,
        parallel: 1,
        onEvent: (event) => event.type === "planned" && planned.push(event),
        preflight: (plan) => Promise.reject(new Stop(plan)),
      }).then(() => assert.fail("the pre-flight stops the pull"), (error) => (error as Stop).plan);
      store.close();
      assert.equal(planned.length, 1);
      const event = planned[0] as Extract<PullEvent, { type: "planned" }>;
      const blobs = [{ digest: big.configDigest, size: config }, ...big.layers];
      const storedBytes = blobs.filter((blob) => stored.has(blob.digest)).reduce((sum, b) => sum + b.size, 0);
      assert.equal(event.bytesTotal, bytesTotal, "every blob and the manifest");
      assert.equal(event.bytesDone, manifest + storedBytes + MiB, "stored blobs, the manifest, the kept MiB");
      assert.equal(event.blobsTotal, blobs.length);
      assert.equal(event.blobsDone, blobs.filter((blob) => stored.has(blob.digest)).length);
      assert.deepEqual(event.blobs.find((blob) => blob.digest === largest.digest), {
        digest: largest.digest,
        size: largest.size,
        bytesDone: MiB,
      });
      assert.equal(plan.refs[0].bytesTotal, bytesTotal);
      assert.equal((await storeContent(storePath)).blobs.size, stored.size, "nothing more was stored");

      // 3. The pull itself: progress computed from planned + blob-progress + blob-done only grows, resumes
      // at exactly the planned byte, and ends at bytesTotal.
      store = await Store.open(storePath, { write: true, command: "test" });
      const done = new Map<string, number>();
      let manifests = 0;
      let last = 0;
      let resumedAt: number | undefined;
      const progress = () => manifests + [...done.values()].reduce((sum, bytes) => sum + bytes, 0);
      await pull(client, store, [ref], {
        readArtifact: readAppArtifact,
        limits: DEFAULT_BLOB_LIMITS,
        platform: PLATFORM,
        parallel: 3,
        onEvent: (event) => {
          if (event.type === "planned") {
            for (const blob of event.blobs) done.set(blob.digest, blob.bytesDone);
            manifests = event.bytesTotal - event.blobs.reduce((sum, blob) => sum + blob.size, 0);
          } else if (event.type === "blob-start" && event.digest === largest.digest) resumedAt = event.offset;
          else if (event.type === "blob-progress") done.set(event.digest, event.bytesDone);
          else if (event.type === "blob-done") done.set(event.digest, event.size);
          else return;
          assert.ok(progress() >= last, `progress went back from ${last} to ${progress()} on ${event.type}`);
          last = progress();
        },
      });
      store.close();
      assert.equal(resumedAt, MiB, "the download resumed where the plan said");
      assert.equal(last, bytesTotal);
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  name:
    "pre-flight: a pull larger than a tmpfs store's room fails with insufficient_storage before any blob is fetched; remounted larger it succeeds",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { big } = env.images;
    const proxy = await startFaultProxy(env.registry);
    const storePath = `${await scratchDir("preflight-")}/store`;
    await Deno.mkdir(storePath);
    await run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", storePath]);
    const client = new RegistryClient();
    try {
      const ref = big.ref.replace(env.registry, proxy.host);
      const layerBytes = big.layers.reduce((sum, layer) => sum + layer.size, 0);

      // In process, to read the error's details.
      const store = await Store.open(storePath, { write: true, command: "test" });
      const policy = { watermark: 95, reserve: MiB };
      const error = await pull(client, store, [parseReference(ref)], {
        readArtifact: readAppArtifact,
        limits: DEFAULT_BLOB_LIMITS,
        platform: PLATFORM,
        parallel: 3,
        preflight: async (plan) => {
          await checkPlanSpace(store, plan, { policy });
        },
      }).then(() => assert.fail("the pull does not fit"), (error) => error);
      store.close();
      assert.ok(error instanceof BerthError, String(error));
      assert.equal(error.reason, "insufficient_storage");
      assert.ok(error.transient, "space may appear later");
      const { needBytes, freeBytes, path } = error.details as Record<string, number | string>;
      assert.ok(Number(needBytes) > layerBytes, `needBytes ${needBytes} covers the layers (${layerBytes})`);
      assert.ok(Number(freeBytes) <= 16 * MiB && Number(freeBytes) > 15 * MiB, `freeBytes ${freeBytes}`);
      assert.equal(path, storePath);
      assert.match(error.message, new RegExp(`${storePath}.*needs 4\\d\\.\\d MiB, 1\\d\\.\\d MiB free`));

      // The command: the same refusal, one line, exit 1.
      const pulled = await runBerth(["--store", storePath, "--docker-host", env.dockerHost, "pull", ref]);
      assert.equal(pulled.code, 1, pulled.stderr);
      assert.match(pulled.stderr, /^berth: not enough space for .*berth-test\/big.* in the store .*needs/m);

      assert.equal(proxy.stats.blobBytes.size, 0, "no blob was fetched (an image's plan needs none)");
      const content = await storeContent(storePath);
      for (const digest of [big.configDigest, ...big.layers.map((layer) => layer.digest)]) {
        assert.ok(!content.blobs.has(digest), `${digest} is not stored`);
      }
      assert.deepEqual(content.ingests, [], "no partial download was started");

      await run(["mount", "-o", "remount,size=256m", storePath]);
      const retried = await runBerth(["--store", storePath, "--docker-host", env.dockerHost, "pull", ref]);
      assert.equal(retried.code, 0, retried.stderr);
      const after = await storeContent(storePath);
      for (const layer of big.layers) assert.ok(after.blobs.has(layer.digest), `${layer.digest} stored`);
      assert.equal(
        proxy.totalBlobBytes(),
        layerBytes + (await configSize(env.registry, "berth-test/big", "1")),
      );
    } finally {
      await client.close();
      await proxy.close();
      await run(["umount", storePath]).catch(() => run(["umount", "-l", storePath]));
    }
  },
});

Deno.test({
  name:
    "check --json: need, free, after and verdict per filesystem; without an engine, the store alone and why",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { big } = env.images;
    const storePath = `${await scratchDir("check-")}/store`;
    await Deno.mkdir(storePath);
    await run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", storePath]);
    try {
      const manifest = await manifestBytes(env.registry, "berth-test/big", "1");
      const config = await configSize(env.registry, "berth-test/big", "1");
      const layers = big.layers.reduce((sum, layer) => sum + layer.size, 0);
      const storeNeed = manifest + config + layers;
      const check = (dockerHost: string, ...extra: string[]) =>
        runBerth(["--json", "--store", storePath, "--docker-host", dockerHost, ...extra, "check", big.ref]);

      // The test engine's data root is not on the tmpfs: two filesystems, two checks.
      const withEngine = await check(env.dockerHost);
      assert.equal(withEngine.code, 0, withEngine.stderr);
      const report = JSON.parse(withEngine.stdout);
      assert.equal(report.fits, true);
      assert.equal(report.engineSkipped, undefined, withEngine.stdout);
      assert.deepEqual(report.checks.map((check: { what: string }) => check.what), ["store", "engine"]);
      const [store, engine] = report.checks;
      assert.equal(store.path, storePath);
      assert.equal(store.mountedOn, storePath);
      assert.equal(store.needBytes, storeNeed, "the manifest, config and layers, nothing stored yet");
      assert.equal(store.sizeBytes, 256 * MiB);
      assert.equal(store.freeAfter, store.freeBytes - storeNeed);
      assert.equal(store.fits, true);
      // The engine is asked by config digest: an image it holds needs nothing, else the unpacked estimate.
      const inEngine = await run(["docker", "-H", env.dockerHost, "image", "inspect", big.configDigest])
        .then(() => true, () => false);
      const estimate = big.layers.reduce((sum, layer) => sum + Math.round(layer.size * 2.5), 0);
      assert.equal(engine.needBytes, inEngine ? 0 : estimate);
      assert.deepEqual(report.policy, { watermark: 95, reserve: 64 * MiB });

      // A stricter policy from the config: 224 MiB kept free leaves no room for 41 MiB in 256 MiB.
      const configPath = `${storePath}-config.yml`;
      await Deno.writeTextFile(configPath, "storage: { reserve: 224MiB }\n");
      const strict = await check(env.dockerHost, "--config", configPath);
      assert.equal(strict.code, 1, strict.stderr);
      assert.equal(JSON.parse(strict.stdout).checks[0].fits, false);
      assert.match(strict.stderr, /not enough space .* in the store .*needs 4\d\.\d MiB/);

      // No engine: the store is checked alone, and the report says why the engine was not.
      const noEngine = await check(`unix://${storePath}-nothing.sock`);
      assert.equal(noEngine.code, 0, noEngine.stderr);
      const alone = JSON.parse(noEngine.stdout);
      assert.deepEqual(alone.checks.map((check: { what: string }) => check.what), ["store"]);
      assert.match(alone.engineSkipped, /^engine not checked \(unix:\/\/.*-nothing\.sock\): /);
      const text = await runBerth([
        "--store",
        storePath,
        "--docker-host",
        "unix:///nonexistent",
        "check",
        big.ref,
      ]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(
        text.stdout,
        /^store \(.*\): needs 4\d\.\d MiB, .* free, .* free after \(.*% used\): fits$/m,
      );
      assert.match(text.stdout, /^engine not checked/m);
      // check downloads no layer: for an image nothing at all is stored.
      assert.equal((await storeContent(storePath)).blobs.size, 0);
    } finally {
      await run(["umount", storePath]).catch(() => run(["umount", "-l", storePath]));
    }
  },
});
