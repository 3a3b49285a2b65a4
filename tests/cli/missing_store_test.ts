/**
 * A store that does not exist holds nothing: only a successful pull creates one. Reading commands treat it
 * as empty (exit 0, one line on stderr saying it does not exist); a failed pull leaves no store behind.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, testEnv, withServices } from "../harness/env.ts";
import { statIfExists } from "../../src/util/fs.ts";

/** A loopback port nothing listens on: connections to it are refused at once. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("ls, fsck and prune of a store that does not exist: empty, exit 0, the same line, nothing created", async () => {
  const dir = await scratchDir("missing-store-");
  const store = `${dir}/no/store`;
  const note = `store ${store} does not exist yet (nothing was pulled into it)`;
  const cases: [string[], RegExp][] = [
    [["ls"], /^IMAGES\nREFERENCE +DIGEST +PLATFORM +SIZE\n\nAPPS\nNAME +FETCHED +INSTALLED +RUNNING\n$/],
    [["fsck"], /^0 references, 0 blobs \(0 B\) checked\nStore OK\n$/],
    [["fsck", "--repair"], /^0 references, 0 blobs \(0 B\) checked\nStore OK\n$/],
    [["prune"], /^Pruned: nothing \(the store is empty\)\n$/],
    [["prune", "--dry-run"], /^Would prune: nothing/],
  ];
  for (const [args, stdout] of cases) {
    const result = await runBerth(["--store", store, ...args]);
    assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stderr.trim(), note, args.join(" "));
    assert.match(result.stdout, stdout, args.join(" "));
  }
  const json = async (...args: string[]) => {
    const result = await runBerth(["--store", store, "--json", ...args]);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout);
  };
  assert.deepEqual(await json("ls"), { images: [], signatures: [], apps: [] });
  const fsck = await json("fsck");
  assert.deepEqual([fsck.ok, fsck.refs, fsck.blobs, fsck.problems], [true, 0, 0, []]);
  assert.deepEqual((await json("prune")).refsRemoved, []);
  assert.equal(await statIfExists(`${dir}/no`), undefined, "no reading command creates the store");
});

Deno.test("a pull that cannot reach its registry creates no store and says why once", async () => {
  const dir = await scratchDir("failed-pull-");
  const host = `127.0.0.1:${closedPort()}`;
  const ref = `${host}/factory/shop:v1`;
  const result = await runBerth(["--store", `${dir}/x/new`, "pull", ref]);
  assert.equal(result.code, 1, result.stderr);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, result.stderr);
  assert.match(
    lines[0],
    new RegExp(`^berth: cannot reach registry ${host} for manifest ${ref} after \\d+ attempts: `),
  );
  assert.equal(lines[0].split(`cannot reach registry ${host}`).length, 2, `said twice: ${lines[0]}`);
  assert.equal(await statIfExists(`${dir}/x`), undefined, "neither the store nor its parent is left");

  // An empty directory given as the store stays empty.
  await Deno.mkdir(`${dir}/empty`);
  assert.equal((await runBerth(["--store", `${dir}/empty`, "pull", ref])).code, 1);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/empty`)), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "a pull of a reference the registry does not have creates no store; a store that existed stays",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("failed-pull-");
    const missing = `${env.registry}/berth-test/no-such-repo:1`;
    const failed = await runBerth(["--store", `${dir}/new`, "pull", missing, env.images.base.ref]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /no-such-repo:1: not found in registry/);
    // The other reference may have been stored meanwhile: then the store is kept, with it.
    const kept = await statIfExists(`${dir}/new`);
    if (kept) {
      const listed = JSON.parse((await runBerth(["--store", `${dir}/new`, "--json", "ls"])).stdout);
      assert.deepEqual(listed.images.map((image: { ref: string }) => image.ref), [env.images.base.ref]);
    }

    const alone = await runBerth(["--store", `${dir}/alone`, "pull", missing]);
    assert.equal(alone.code, 1, alone.stderr);
    assert.equal(await statIfExists(`${dir}/alone`), undefined, "nothing was stored: no store");

    const store = `${dir}/store`;
    assert.equal((await runBerth(["--store", store, "pull", env.images.base.ref])).code, 0);
    assert.equal((await runBerth(["--store", store, "pull", missing])).code, 1);
    const fsck = await runBerth(["--store", store, "fsck"]);
    assert.equal(fsck.code, 0, "an existing store is kept as it was: " + fsck.stdout);
    assert.match(fsck.stdout, /^1 references/);
  },
});
