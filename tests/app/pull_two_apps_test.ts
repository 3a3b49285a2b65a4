/** `berth pull` of two apps at once, which pin the same image (as two versions of one app do). */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";

Deno.test({
  name: "pull v1 v2 of an app in one command",
  ...withServices,
  async fn() {
    // Demonstrates a bug in src/fetch/pull.ts pull(): an app's pinned images are pulled by a nested
    // pull() call with its own `downloads` map (and its own index.json update chain and parallelism), so
    // two apps pinning the same image download the same blobs into the same ingest directory at once and
    // both fail ("No such file or directory (os error 2): open '<store>/ingest/<hex>…'"). Fails until
    // nested pulls share the outer pull's downloads, index updates and limit.
    const env = testEnv()!;
    const { appA, appB, appC } = env.images;
    const refs: string[] = [];
    for (const [version, api] of [["v1", appB], ["v2", appC]] as const) {
      const project = await scratchDir(`two-apps-${version}-`);
      await Deno.writeTextFile(
        `${project}/docker-compose.yml`,
        `services:\n  web:\n    image: ${appA.ref}\n  api:\n    image: ${api.ref}\n`,
      );
      const ref = `${env.registry}/two-apps/shop:${version}`;
      assert.equal((await runBerth(["publish", project, ref])).code, 0);
      refs.push(ref);
    }
    const store = `${await scratchDir("two-apps-")}/store`;
    const pulled = await runBerth(["--store", store, "pull", ...refs]);
    assert.equal(pulled.code, 0, pulled.stderr.trim().split("\n").at(-1));
    const listed = JSON.parse((await runBerth(["--store", store, "--json", "ls"])).stdout);
    assert.deepEqual(listed.apps.map((app: { fetched: string[] }) => app.fetched.sort()), [refs]);
    const fsck = await runBerth(["--store", store, "--json", "fsck"]);
    assert.equal(fsck.code, 0, fsck.stdout);
    assert.deepEqual(JSON.parse(fsck.stdout).staleIngests, []);
  },
});
