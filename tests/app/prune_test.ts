/**
 * `berth prune` on real parts: an app published as v1 and then v2 under one tag to the real registry,
 * pulled, installed and run in a dockerd of its own with real compose. v1 pins app-a (shared with v2),
 * app-b (which the user also pulls with plain `berth pull`) and app-c (v1 only); v2 pins app-a and big.
 * keep=1 keeps v1; keep=0 removes v1's blobs, but not app-c while a container uses it; once the container
 * is gone app-c goes from the store and the engine, while v2 runs on, shared content and the user's image
 * stay, and fsck is clean. Then copies of the store are pruned again under kill -9 at different steps,
 * and the next prune must end where an uninterrupted one does.
 */
import { writeProject } from "../harness/projects.ts";
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { runBerth, scratchDir, spawnBerth, testEnv, withServices } from "../harness/env.ts";
import type { ImageInfo } from "../harness/images.ts";
import { localImageTag } from "../../src/app/lifecycle.ts";
import { reclaimableBytes } from "../../src/app/prune.ts";
import { Store } from "../../src/store/store.ts";

/** The digest reference an app pins for a test image, as publish writes it. */
const pinnedRef = (image: ImageInfo) => `${image.ref.replace(/:[^:/]+$/, "")}@${image.digest}`;

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

async function blobNames(store: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${store}/blobs/sha256`))).map((entry) => entry.name).sort();
}

/** index.json entries (reference → digest) and app records without their timestamps. */
async function storeState(store: string): Promise<string> {
  const index = JSON.parse(await Deno.readTextFile(`${store}/index.json`));
  const apps = JSON.parse(await Deno.readTextFile(`${store}/apps.json`)).apps;
  for (const record of Object.values(apps) as { updatedAt?: string }[]) delete record.updatedAt;
  return JSON.stringify({
    refs: index.manifests.map((entry: { digest: string; annotations: Record<string, string> }) =>
      `${entry.annotations["org.opencontainers.image.ref.name"]} ${entry.digest}`
    ).sort(),
    apps,
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test({
  name: "prune: keep=1 keeps v1; keep=0 removes v1-only content and images, never shared, user-pulled or " +
    "in-use ones; fsck clean; kill -9 mid-prune is finished by the next prune",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const { appA, appB, appC, big } = env.images;
    const appRef = `${env.registry}/prune/shop:stable`;
    const v1Project = await scratchDir("prune-v1-");
    await writeProject(v1Project, { web: appA.ref, api: appB.ref, worker: appC.ref });
    const v2Project = await scratchDir("prune-v2-");
    await writeProject(v2Project, { web: appA.ref, worker: big.ref });

    const dir = await scratchDir("prune-device-");
    const store = `${dir}/store`;
    const dockerd = await startDockerd(`${dir}/engine`);
    const device = ["--store", store, "--compose-root", `${dir}/apps`, "--docker-host", dockerd.host];
    const berth = (...args: string[]) => runBerth([...device, "--compose", "docker-compose", ...args]);
    const ok = async (...args: string[]) => {
      const result = await berth(...args);
      assert.equal(result.code, 0, `berth ${args.join(" ")}: ${result.stderr}`);
      return result.stdout;
    };
    const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
    const engineHas = (id: string) => docker("image", "inspect", id).then(() => true, () => false);
    const prune = async (keep: number) => JSON.parse(await ok("--json", "prune", "--keep", String(keep)));
    const blob = (digest: string) => `${store}/blobs/sha256/${digest.slice("sha256:".length)}`;
    const runningImages = async () =>
      (await docker("ps", "--format", '{{.Label "com.docker.compose.service"}} {{.Image}}')).trim().split(
        "\n",
      )
        .filter(Boolean).sort();
    try {
      const v1 = JSON.parse(await ok("--json", "publish", v1Project, appRef)).digest;
      await ok("pull", appRef);
      await ok("install", appRef);
      await ok("run", "shop");
      const v2 = JSON.parse(await ok("--json", "publish", v2Project, appRef)).digest;
      await ok("pull", appRef);
      await ok("install", appRef);
      await ok("run", "shop");
      // The user pulls one of v1's images by hand: from now on it is theirs.
      await ok("pull", pinnedRef(appB));
      const v1Manifest = JSON.parse(await Deno.readTextFile(blob(v1)));
      const bundle = v1Manifest.layers[0];
      const v1OnlyBlobs = [v1, bundle.digest, bundle.annotations["org.foundries.app.bundle.index.digest"]];
      assert.ok(v1OnlyBlobs.every((digest) => Deno.statSync(blob(digest)).isFile));

      // keep=1: v1 is the one earlier version kept; nothing goes.
      const kept = await prune(1);
      assert.deepEqual(kept.refsRemoved, []);
      assert.deepEqual(kept.imagesRemoved, []);
      assert.equal(kept.blobsRemoved, 0);
      for (const digest of v1OnlyBlobs) assert.ok(await exists(blob(digest)), `keep=1 keeps ${digest}`);
      const apps = () => Deno.readTextFile(`${store}/apps.json`).then((text) => JSON.parse(text).apps.shop);
      assert.deepEqual((await apps()).previous, [v1]);
      assert.ok(await engineHas(appC.configDigest));

      // Copies for the kill -9 rounds below, in the state before keep=0.
      const copies: string[] = [];
      for (let round = 0; round < 4; round++) {
        copies.push(`${dir}/copy-${round}`);
        await run(["cp", "-a", store, copies[round]]);
      }

      // A container outside the app uses app-c: it is not removed, from the engine or the store.
      const tagC = localImageTag(pinnedRef(appC));
      await docker(
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        tagC,
        "/bin/busybox",
        "sleep",
        "600",
      );
      const held = await prune(0);
      assert.deepEqual(held.imagesInUse, [tagC]);
      assert.deepEqual(held.imagesRemoved, []);
      assert.deepEqual(held.refsRemoved, []);
      for (const digest of v1OnlyBlobs) {
        assert.equal(await exists(blob(digest)), false, `keep=0 removes ${digest}`);
      }
      assert.deepEqual((await apps()).previous, []);
      assert.ok(await engineHas(appC.configDigest));
      assert.ok(await exists(blob(appC.configDigest)));
      assert.equal((await berth("fsck")).code, 0);

      // The container gone, app-c goes: tag, image and its own blobs; shared and user-pulled content stays.
      await docker("rm", "-f", "holder");
      const pruned = await prune(0);
      assert.deepEqual(pruned.imagesRemoved, [tagC]);
      assert.deepEqual(pruned.imagesInUse, []);
      assert.deepEqual(pruned.refsRemoved, [pinnedRef(appC)]);
      assert.equal(await engineHas(appC.configDigest), false);
      const sharedWithC = new Set(
        [...appA.layers, ...big.layers, ...appB.layers].map((layer) => layer.digest),
      );
      for (const layer of appC.layers) {
        assert.equal(
          await exists(blob(layer.digest)),
          sharedWithC.has(layer.digest),
          `app-c layer ${layer.digest}`,
        );
      }
      assert.equal(await exists(blob(appC.configDigest)), false);
      for (const image of [appA, appB, big]) {
        assert.ok(await engineHas(image.configDigest), `${image.ref} stays in the engine`);
        assert.ok(await exists(blob(image.configDigest)), `${image.ref} stays in the store`);
        for (const layer of image.layers) assert.ok(await exists(blob(layer.digest)));
      }
      // Everything v2 needs to be installed again (fsck does not look at an app's bundle index).
      const v2Manifest = JSON.parse(await Deno.readTextFile(blob(v2)));
      const v2Bundle = v2Manifest.layers[0];
      for (
        const digest of [
          v2Manifest.config.digest,
          v2Bundle.digest,
          v2Bundle.annotations["org.foundries.app.bundle.index.digest"],
        ]
      ) {
        assert.ok(await exists(blob(digest)), `v2 needs ${digest}`);
      }
      assert.deepEqual(
        (await runningImages()).map((line) => line.split(" ")[0]),
        ["web", "worker"],
        "v2 runs on",
      );
      const fsck = await berth("--json", "fsck");
      assert.equal(fsck.code, 0, fsck.stdout);
      const again = await prune(0);
      assert.equal(again.blobsRemoved, 0, "a second prune finds nothing");
      const expectedBlobs = await blobNames(store);
      const expectedState = await storeState(store);

      // kill -9 at different steps of a keep=0 prune of the copies; the next prune must end the same way.
      const triggers: { name: string; fired: (copy: string, start: Deno.FileInfo[]) => Promise<boolean> }[] =
        [
          { name: "at once", fired: () => Promise.resolve(true) },
          {
            name: "index.json replaced",
            fired: async (copy, start) => (await Deno.stat(`${copy}/index.json`)).ino !== start[0].ino,
          },
          {
            name: "apps.json replaced",
            fired: async (copy, start) => (await Deno.stat(`${copy}/apps.json`)).ino !== start[1].ino,
          },
          {
            name: "first blob deleted",
            fired: async (copy, start) => (await blobNames(copy)).length < start[2].size,
          },
        ];
      // On the first copy: what reclaimableBytes and a dry run announce is exactly what a prune frees.
      const copyBlobs = await blobNames(copies[0]);
      let goneBytes = 0;
      for (const name of copyBlobs.filter((name) => !expectedBlobs.includes(name))) {
        goneBytes += (await Deno.stat(`${copies[0]}/blobs/sha256/${name}`)).size;
      }
      assert.ok(goneBytes > 0);
      const reader = await Store.open(copies[0], { write: false, command: "test" });
      assert.equal(await reclaimableBytes(reader, 0), goneBytes);
      assert.equal(await reclaimableBytes(reader, 1), 0);
      const dry = await runBerth([
        "--store",
        copies[0],
        "--docker-host",
        dockerd.host,
        "--json",
        "prune",
        "--keep",
        "0",
        "--dry-run",
      ]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(JSON.parse(dry.stdout).blobsRemoved, copyBlobs.length - expectedBlobs.length);
      assert.equal(JSON.parse(dry.stdout).bytesFreed, goneBytes);
      assert.deepEqual(await blobNames(copies[0]), copyBlobs, "a dry run removes nothing");

      const log: string[] = [];
      for (const [round, trigger] of triggers.entries()) {
        const copy = copies[round];
        const start = [
          await Deno.stat(`${copy}/index.json`),
          await Deno.stat(`${copy}/apps.json`),
          { size: (await blobNames(copy)).length } as Deno.FileInfo,
        ];
        const child = spawnBerth(["--store", copy, "--docker-host", dockerd.host, "prune", "--keep", "0"]);
        const stderr = new Response(child.stderr).text();
        let exited = false;
        child.status.then(() => exited = true);
        const began = Date.now();
        while (!exited && !(await trigger.fired(copy, start).catch(() => false))) await sleep(1);
        try {
          child.kill("SIGKILL");
        } catch {
          // exited between the check and the kill
        }
        const status = await child.status;
        const errors = (await stderr).trim();
        log.push(
          `${trigger.name}: ${
            status.signal === "SIGKILL" ? `killed after ${Date.now() - began} ms` : "finished first"
          }`,
        );
        if (status.signal !== "SIGKILL") assert.equal(status.code, 0, errors);
        const afterKill = await runBerth(["--store", copy, "--json", "fsck"]);
        assert.equal(afterKill.code, 0, `fsck after the kill (${trigger.name}): ${afterKill.stdout}`);
        const finish = await runBerth([
          "--store",
          copy,
          "--docker-host",
          dockerd.host,
          "prune",
          "--keep",
          "0",
        ]);
        assert.equal(finish.code, 0, finish.stderr);
        assert.deepEqual(await blobNames(copy), expectedBlobs, `blobs after ${trigger.name}`);
        assert.equal(await storeState(copy), expectedState, `index and records after ${trigger.name}`);
        assert.deepEqual(await Array.fromAsync(Deno.readDir(`${copy}/ingest`)), []);
        assert.equal((await runBerth(["--store", copy, "fsck"])).code, 0);
      }
      console.log(`kill -9 rounds: ${log.join("; ")}`);
    } finally {
      await docker("rm", "-f", "holder").catch(() => {});
      await dockerd.stop();
    }
  },
});

Deno.test({
  name:
    "prune: an unreachable engine fails with one line before the store changes; bad --keep is a usage error",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const store = `${await scratchDir("prune-noengine-")}/store`;
    assert.equal((await runBerth(["--store", store, "pull", env.images.appA.ref])).code, 0);
    const before = await Deno.readTextFile(`${store}/index.json`);
    const blobs = await blobNames(store);
    const failed = await runBerth([
      "--store",
      store,
      "--docker-host",
      `unix://${store}/no-such.sock`,
      "prune",
      "--keep",
      "0",
    ]);
    assert.equal(failed.code, 1);
    assert.match(
      failed.stderr.trim(),
      /^berth: cannot reach the docker engine at unix:\/\/.*no-such\.sock: /,
    );
    assert.equal(await Deno.readTextFile(`${store}/index.json`), before);
    assert.deepEqual(await blobNames(store), blobs);
    const usage = await runBerth(["--store", store, "prune", "--keep", "-1"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--keep/);
  },
});
