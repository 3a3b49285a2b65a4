/**
 * A store on a filesystem that reports no capacity: ramfs prints what a FUSE filesystem that does not answer
 * statfs prints (`ramfs 0 0 0 - /mnt`), and is in every kernel. The pre-flight says the store was not
 * checked and lets the pull go on, instead of refusing every pull.
 */
import assert from "node:assert/strict";
import { run } from "../harness/services.ts";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { writeProject } from "../harness/projects.ts";
import { spaceOf } from "../../src/util/disk_space.ts";

const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

Deno.test({
  name:
    "a store on a filesystem of unknown capacity: check reports the store not checked, pull warns once and goes on",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const scratch = await scratchDir("no-capacity-");
    const storePath = `${scratch}/store`;
    await Deno.mkdir(storePath);
    await run(["mount", "-t", "ramfs", "ramfs", storePath]);
    try {
      const space = await spaceOf(`${storePath}/not/yet`);
      assert.equal(space.capacityUnknown, "df reports 0 blocks");
      assert.equal(space.mountedOn, storePath);
      const skipped = new RegExp(
        `^store not checked: ${literal(storePath)} is on ${literal(storePath)}, whose capacity is unknown ` +
          `\\(df reports 0 blocks\\); the pull goes on, and fails only if the disk fills$`,
      );

      // check: the store is not judged, the engine's own filesystem still is; it fits.
      const checked = await runBerth([
        "--json",
        "--store",
        storePath,
        "--docker-host",
        env.dockerHost,
        "check",
        env.images.appA.ref,
      ]);
      assert.equal(checked.code, 0, checked.stderr);
      const report = JSON.parse(checked.stdout);
      assert.equal(report.fits, true);
      assert.match(report.storeSkipped, skipped);
      assert.equal(report.engineSkipped, undefined, checked.stdout);
      assert.deepEqual(report.checks.map((check: { what: string }) => check.what), ["engine"]);
      const text = await runBerth([
        "--store",
        storePath,
        "--docker-host",
        "unix:///nonexistent",
        "check",
        env.images.appA.ref,
      ]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, new RegExp(skipped.source.slice(0, -1) + "$", "m"));
      assert.match(text.stdout, /^engine not checked/m);

      // pull of an app (pre-flight twice: its own blobs, then the whole plan) and an image: one warning.
      const project = `${scratch}/project`;
      await Deno.mkdir(project);
      await writeProject(project, { web: env.images.appA.ref });
      const appRef = `${env.registry}/no-capacity/shop:v1`;
      const published = await runBerth(["publish", project, appRef]);
      assert.equal(published.code, 0, published.stderr);
      const pulled = await runBerth([
        "--store",
        storePath,
        "--docker-host",
        env.dockerHost,
        "pull",
        appRef,
        env.images.appB.ref,
      ]);
      assert.equal(pulled.code, 0, pulled.stderr);
      const warnings = pulled.stderr.split("\n").filter((line) => /warning|not checked/.test(line));
      assert.equal(warnings.length, 1, pulled.stderr);
      assert.match(warnings[0], new RegExp(`^berth: warning: ${skipped.source.slice(1)}`));
      for (const layer of [...env.images.appA.layers, ...env.images.appB.layers]) {
        const stored = await Deno.stat(`${storePath}/blobs/sha256/${layer.digest.slice("sha256:".length)}`);
        assert.equal(stored.size, layer.size, `${layer.digest} stored`);
      }
    } finally {
      await run(["umount", storePath]).catch(() => run(["umount", "-l", storePath]));
    }
  },
});
