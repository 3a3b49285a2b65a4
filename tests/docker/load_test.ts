/**
 * `berth load`: stored images into a real dockerd of their own (empty at the start), streamed from the
 * store with no network: image IDs equal the config digests, shared layers are not sent twice, a second
 * load sends nothing, and an engine error inside the 200 answer is a failure.
 */
import assert from "node:assert/strict";
import { run, startDockerd } from "../harness/services.ts";
import { runBerth, scratchDir, spawnBerth, testEnv, withServices } from "../harness/env.ts";
import { Engine } from "../../src/docker/engine.ts";
import { STAND_IN_LABEL } from "../../src/docker/load_steps.ts";

/** The image is whole: a container of it runs busybox from its base layer. */
async function assertRuns(host: string, image: string): Promise<void> {
  const listing = await run([
    "docker",
    "-H",
    host,
    "run",
    "--rm",
    "--network",
    "none",
    image,
    "/bin/busybox",
    "ls",
    "/bin/busybox",
  ]);
  assert.match(listing, /busybox/);
}

Deno.test({
  name: "load streams stored images into an empty engine, sending shared layers once",
  ...withServices,
  async fn() {
    const { appA, appB, big } = testEnv()!.images;
    const store = await scratchDir("load-");
    const pulled = await runBerth(["--store", store, "pull", appA.ref, appB.ref, big.ref]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const dockerd = await startDockerd(await scratchDir("load-engine-"));
    try {
      const docker = (...args: string[]) => run(["docker", "-H", dockerd.host, ...args]);
      const load = async (...refs: string[]) => {
        const result = await runBerth([
          "--store",
          store,
          "--docker-host",
          dockerd.host,
          "--json",
          "load",
          ...refs,
        ]);
        assert.equal(result.code, 0, result.stderr);
        return JSON.parse(result.stdout) as {
          images: { imageId: string; alreadyPresent: boolean }[];
          layersSent: number;
          bytesSent: number;
        };
      };
      const first = await load(appA.ref);
      assert.equal(first.images[0].imageId, appA.configDigest);
      assert.equal(first.layersSent, 3);
      assert.equal(
        (await docker("image", "inspect", "--format", "{{.Id}}", appA.ref)).trim(),
        appA.configDigest,
      );

      // app-b shares app-a's base layer: only its own two layers cross the socket.
      const second = await load(appB.ref);
      assert.equal(second.images[0].imageId, appB.configDigest);
      assert.equal(second.layersSent, 2);
      const ownBytes = appB.layers.slice(1).reduce((sum, layer) => sum + layer.size, 0);
      assert.ok(
        second.bytesSent < ownBytes + 64 * 1024,
        `${second.bytesSent} bytes sent for ${ownBytes} of new layers`,
      );
      assert.ok(second.bytesSent < ownBytes + appB.layers[0].size, "the base layer was not sent");

      // Two at once, one of them loaded already: one archive with big's layers only.
      const both = await load(big.ref, appA.ref);
      assert.deepEqual(both.images.map((image) => [image.imageId, image.alreadyPresent]), [
        [big.configDigest, false],
        [appA.configDigest, true],
      ]);
      assert.equal(both.layersSent, big.layers.length - 1, "big's base layer is the engine's already");
      const again = await load(appA.ref);
      assert.equal(again.images[0].alreadyPresent, true);
      assert.equal(again.bytesSent, 0);

      // Every loaded image is whole: it runs.
      for (const image of [appA, appB, big]) {
        await assertRuns(dockerd.host, image.ref);
      }
      const ids = (await docker("image", "ls", "-q", "--no-trunc")).trim().split("\n").sort();
      assert.deepEqual(ids, [appA.configDigest, appB.configDigest, big.configDigest].sort());
    } finally {
      await dockerd.stop();
    }
  },
});

Deno.test({
  name: "images on one base, loaded at once: the base is sent once; when its load fails, the others go whole",
  ...withServices,
  async fn() {
    const { appA, appB, big } = testEnv()!.images;
    const store = await scratchDir("load-shared-");
    const pulled = await runBerth(["--store", store, "pull", appA.ref, appB.ref, big.ref]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const load = async (host: string) =>
      await runBerth([
        "--store",
        store,
        "--docker-host",
        host,
        "--json",
        "load",
        big.ref,
        appA.ref,
        appB.ref,
      ]);
    // Every image of the engine, stand-ins (untagged) included.
    const images = async (host: string) =>
      (await run(["docker", "-H", host, "image", "ls", "-aq", "--no-trunc"])).trim().split("\n")
        .filter(Boolean).sort();

    // big goes first (the most to send), in two steps: the busybox base and its 32 MiB layer, then its
    // 8 MiB layer; app-a and app-b send their own layers while the first step applies, and end their
    // requests after it. No stand-in of big's first step is left.
    const clean = await startDockerd(await scratchDir("load-shared-engine-"));
    try {
      const result = await load(clean.host);
      assert.equal(result.code, 0, result.stderr);
      const loaded = JSON.parse(result.stdout) as { layersSent: number };
      assert.equal(loaded.layersSent, 7, "the base once, two layers of each image");
      assert.deepEqual(
        await images(clean.host),
        [appA.configDigest, appB.configDigest, big.configDigest].sort(),
      );
    } finally {
      await clean.stop();
    }

    // Damage big's 32 MiB layer after it was verified: the load of big's first step (the base and that
    // layer) fails in the engine, and app-a and app-b, which left the base out, are sent whole and load.
    const path = `${store}/blobs/sha256/${big.layers[1].digest.slice(7)}`;
    await Deno.chmod(path, 0o644);
    const bytes = await Deno.readFile(path);
    bytes.fill(0, bytes.length / 2, bytes.length / 2 + 4096);
    await Deno.writeFile(path, bytes);
    const engine = await startDockerd(await scratchDir("load-shared-bad-engine-"));
    try {
      const result = await load(engine.host);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /docker engine failed to load .*big:1/);
      assert.deepEqual(await images(engine.host), [appA.configDigest, appB.configDigest].sort());
      for (const image of [appA, appB]) {
        await assertRuns(engine.host, image.configDigest);
      }
    } finally {
      await engine.stop();
    }
  },
});

Deno.test({
  name: "a stepped load killed -9 leaves a stand-in image; the next load removes it and brings the image",
  ...withServices,
  async fn() {
    const { big } = testEnv()!.images;
    const store = await scratchDir("load-kill-");
    assert.equal((await runBerth(["--store", store, "pull", big.ref])).code, 0);
    const dockerd = await startDockerd(await scratchDir("load-kill-engine-"));
    const engine = await Engine.connect(dockerd.host);
    const standIns = async () =>
      (await engine.listImages({ label: [STAND_IN_LABEL] })).map((image) => image.Id);
    try {
      // big loads in two steps (the base and 32 MiB, then 8 MiB): kill berth once the first step's
      // stand-in is in the engine. A round whose load ended before the kill landed is run again.
      let left: string[] = [];
      for (let round = 0; round < 5 && left.length === 0; round++) {
        const child = spawnBerth(["--store", store, "--docker-host", dockerd.host, "load", big.ref]);
        const exited = child.status.then(() => true);
        while ((await standIns()).length === 0 && !(await Promise.race([exited, Promise.resolve(false)]))) {
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
        child.kill("SIGKILL");
        const status = await child.status;
        await child.stderr.cancel();
        left = status.signal === "SIGKILL" ? await standIns() : [];
        if (left.length === 0) {
          const all = (await run(["docker", "-H", dockerd.host, "image", "ls", "-aq"])).trim().split("\n");
          if (all[0]) await run(["docker", "-H", dockerd.host, "rmi", "-f", ...all]);
        }
      }
      assert.equal(left.length, 1, "a kill landed while the stand-in was in the engine");
      assert.equal(await engine.inspectImage(big.configDigest), undefined, "big itself is not there");

      const again = await runBerth(["--store", store, "--docker-host", dockerd.host, "load", big.ref]);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(await standIns(), [], "the stand-in is gone");
      const all = (await run(["docker", "-H", dockerd.host, "image", "ls", "-aq", "--no-trunc"])).trim();
      assert.equal(all, big.configDigest);
      await assertRuns(dockerd.host, big.ref);
    } finally {
      engine.close();
      await dockerd.stop();
    }
  },
});

Deno.test({
  name: "an engine error inside the load's 200 answer fails the load with the engine's message",
  ...withServices,
  async fn() {
    const { appC } = testEnv()!.images;
    const store = await scratchDir("load-bad-");
    assert.equal((await runBerth(["--store", store, "pull", appC.ref])).code, 0);
    // Damage a layer after it was verified (as bit rot would): the engine must refuse it.
    const layer = appC.layers[2];
    const path = `${store}/blobs/sha256/${layer.digest.slice(7)}`;
    await Deno.chmod(path, 0o644);
    const bytes = await Deno.readFile(path);
    bytes.fill(0x41, 16, Math.min(bytes.length, 200));
    await Deno.writeFile(path, bytes);
    const dockerd = await startDockerd(await scratchDir("load-bad-engine-"));
    try {
      const result = await runBerth(["--store", store, "--docker-host", dockerd.host, "load", appC.ref]);
      assert.equal(result.code, 1);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^berth: docker engine failed to load .*app-c:1: /);
      const ids = (await run(["docker", "-H", dockerd.host, "image", "ls", "-q"])).trim();
      assert.equal(ids, "", "no image was recorded");
    } finally {
      await dockerd.stop();
    }
  },
});

Deno.test({
  name: "load of a reference that is not in the store fails clearly, without contacting the engine",
  ...withServices,
  async fn() {
    const store = await scratchDir("load-missing-");
    assert.equal((await runBerth(["--store", store, "pull", testEnv()!.images.base.ref])).code, 0);
    const result = await runBerth([
      "--store",
      store,
      "--docker-host",
      "unix:///nonexistent/docker.sock",
      "load",
      testEnv()!.images.appA.ref,
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr.trim(),
      /^berth: .*app-a:1 is not in store .*; fetch it first with 'berth pull /,
    );
    const noEngine = await runBerth([
      "--store",
      store,
      "--docker-host",
      "unix:///nonexistent/docker.sock",
      "load",
      testEnv()!.images.base.ref,
    ]);
    assert.equal(noEngine.code, 1);
    assert.match(
      noEngine.stderr.trim(),
      /^berth: cannot reach the docker engine at unix:\/\/\/nonexistent\/docker\.sock/,
    );
  },
});
