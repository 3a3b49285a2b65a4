/** The store's guarantees seen from outside: one writer at a time, layout versions, fsck and repair. */
import assert from "node:assert/strict";
import { startFaultProxy } from "../harness/fault_proxy.ts";
import { runBerth, scratchDir, spawnBerth, testEnv, withServices } from "../harness/env.ts";

Deno.test({
  name: "a second writer fails at once naming the holder; readers still work",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const proxy = await startFaultProxy(env.registry);
    const store = await scratchDir("lock-");
    try {
      proxy.setThrottle(2 * 1024 * 1024);
      const ref = env.images.big.ref.replace(env.registry, proxy.host);
      const holder = spawnBerth(["--store", store, "pull", ref]);
      const holderErr = new Response(holder.stderr).text();
      const deadline = Date.now() + 20_000;
      while ((await Deno.readTextFile(`${store}/berth.lock`).catch(() => "")) === "") {
        if (Date.now() > deadline) throw new Error("the first pull never took the lock");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const started = Date.now();
      const second = await runBerth(["--store", store, "pull", env.images.base.ref]);
      assert.equal(second.code, 1);
      assert.match(
        second.stderr.trim(),
        new RegExp(`^berth: store .* is in use by pid ${holder.pid} \\(berth pull, since `),
      );
      assert.ok(Date.now() - started < 5_000, "refused at once, not after waiting");
      const listed = await runBerth(["--store", store, "ls"]);
      assert.equal(listed.code, 0, listed.stderr);
      holder.kill("SIGKILL");
      await holder.status;
      await holderErr;
      // The kernel dropped the dead holder's lock: the next writer proceeds.
      proxy.setThrottle(0);
      const after = await runBerth(["--store", store, "pull", ref]);
      assert.equal(after.code, 0, after.stderr);
    } finally {
      await proxy.close();
    }
  },
});

Deno.test({
  name: "a store of an unknown layout version is refused by every command",
  ...withServices,
  async fn() {
    const store = await scratchDir("layout-");
    assert.equal((await runBerth(["--store", store, "pull", testEnv()!.images.base.ref])).code, 0);
    await Deno.writeTextFile(`${store}/berth.json`, JSON.stringify({ layoutVersion: 99 }));
    for (const args of [["ls"], ["fsck"], ["pull", testEnv()!.images.base.ref]]) {
      const result = await runBerth(["--store", store, ...args]);
      assert.equal(result.code, 1, args.join(" "));
      assert.match(result.stderr.trim(), /has layout version 99; this berth only knows version 1/);
    }
  },
});

Deno.test({
  name: "fsck finds corrupt and missing blobs; --repair removes them and a pull restores the store",
  ...withServices,
  async fn() {
    const { appA } = testEnv()!.images;
    const store = await scratchDir("fsck-");
    assert.equal((await runBerth(["--store", store, "pull", appA.ref])).code, 0);
    const corrupt = appA.layers[1].digest;
    const missing = appA.layers[2].digest;
    const corruptPath = `${store}/blobs/sha256/${corrupt.slice(7)}`;
    await Deno.chmod(corruptPath, 0o644);
    const bytes = await Deno.readFile(corruptPath);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    await Deno.writeFile(corruptPath, bytes);
    await Deno.remove(`${store}/blobs/sha256/${missing.slice(7)}`);
    await Deno.mkdir(`${store}/ingest/junk`);

    const checked = await runBerth(["--store", store, "--json", "fsck"]);
    assert.equal(checked.code, 1);
    const report = JSON.parse(checked.stdout);
    assert.equal(report.ok, false);
    assert.deepEqual(report.corruptBlobs, [corrupt]);
    assert.deepEqual(
      report.problems.map((problem: { digest: string; problem: string }) =>
        `${problem.problem} ${problem.digest}`
      ).sort(),
      [`corrupt ${corrupt}`, `missing ${missing}`].sort(),
    );
    assert.deepEqual(report.staleIngests, ["junk"]);

    const repaired = await runBerth(["--store", store, "fsck", "--repair"]);
    assert.equal(repaired.code, 1, "still incomplete until pulled again");
    assert.equal(await Deno.stat(corruptPath).then(() => true, () => false), false);
    const pulled = await runBerth(["--store", store, "pull", appA.ref]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const clean = await runBerth(["--store", store, "fsck"]);
    assert.equal(clean.code, 0, clean.stdout);
    assert.match(clean.stdout, /Store OK/);
  },
});
