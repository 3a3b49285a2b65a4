/**
 * The store never follows a link and never turns a bad digest into a path: berth runs as root, so a link
 * planted in the store (or a digest with `..` in it) must not make it create, delete, write or read a file
 * anywhere else. Unit tests on a scratch store, plus fsck through the CLI.
 */
import assert from "node:assert/strict";
import { Store } from "../../src/store/store.ts";
import { BerthError } from "../../src/util/errors.ts";
import { sha256Of } from "../../src/oci/digest.ts";
import { readApps } from "../../src/store/apps.ts";
import { readAgentState } from "../../src/agent/state.ts";
import { runBerth } from "../harness/env.ts";

async function scratch(): Promise<{ dir: string; store: string; victim: string }> {
  const dir = await Deno.makeTempDir({ prefix: "berth-links-" });
  const victim = `${dir}/victim`;
  await Deno.mkdir(victim);
  await Deno.writeTextFile(`${victim}/precious`, "keep me\n");
  return { dir, store: `${dir}/store`, victim };
}

async function refused(promise: Promise<unknown>, reason: string | string[], pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof BerthError, `a BerthError, got ${error}`);
    assert.ok([reason].flat().includes(error.reason), `${error.reason}: ${error.message}`);
    assert.match(error.message, pattern);
    return;
  }
  assert.fail(`expected a refusal matching ${pattern}`);
}

const untouched = async (victim: string) =>
  assert.deepEqual(
    [
      await Deno.readTextFile(`${victim}/precious`),
      await Array.fromAsync(Deno.readDir(victim), (e) => e.name),
    ],
    ["keep me\n", ["precious"]],
  );

Deno.test("a digest that is not sha256 and 64 lowercase hex never becomes a path: blobPath and ingest refuse it", async () => {
  const { dir, store: root, victim } = await scratch();
  const store = await Store.open(root, { write: true, command: "test" });
  try {
    for (
      const digest of [
        "sha256:../../victim",
        `sha256:${"A".repeat(64)}`,
        "sha256:",
        `sha512:${"a".repeat(64)}`,
      ]
    ) {
      assert.throws(() => store.blobPath(digest), BerthError);
      const bad = /is not a valid digest|algorithm of "sha512:a+" is not supported/;
      await refused(store.ingest(digest, 1), ["invalid_input", "unsupported"], bad);
      await refused(store.readBlob(digest), ["invalid_input", "unsupported"], bad);
    }
    assert.deepEqual(await store.listIngests(), []);
    await untouched(victim);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("links in place of the lock, the index or the blobs directory are refused when the store is opened", async () => {
  const { dir, store: root, victim } = await scratch();
  try {
    (await Store.open(root, { write: true, command: "test" })).close();
    for (
      const [entry, pattern] of [
        ["berth.lock", /berth\.lock is a symbolic link/],
        ["index.json", /index\.json is a symbolic link/],
        ["blobs/sha256", /blobs\/sha256 is a symbolic link/],
        ["ingest", /ingest is a symbolic link/],
      ] as const
    ) {
      const path = `${root}/${entry}`;
      const saved = `${path}.saved`;
      await Deno.rename(path, saved);
      await Deno.symlink(
        entry === "blobs/sha256" || entry === "ingest" ? victim : `${victim}/precious`,
        path,
      );
      await refused(Store.open(root, { write: true, command: "test" }), "store_invalid", pattern);
      await refused(Store.open(root, { write: false, command: "test" }), "store_invalid", pattern);
      await Deno.remove(path);
      await Deno.rename(saved, path);
    }
    // A lock file that is not there yet but a dangling link: opening must not create its target.
    await Deno.remove(`${root}/berth.lock`);
    await Deno.symlink(`${victim}/planted`, `${root}/berth.lock`);
    await refused(Store.open(root, { write: true, command: "test" }), "store_invalid", /berth\.lock/);
    await untouched(victim);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a link among the blobs or the ingests is not read, not written through, and fsck --repair removes it", async () => {
  const { dir, store: root, victim } = await scratch();
  const bytes = new TextEncoder().encode("keep me\n");
  const digest = sha256Of(bytes);
  const hex = digest.slice("sha256:".length);
  try {
    const store = await Store.open(root, { write: true, command: "test" });
    // A blob that is a link to a file with the right content is still not a blob of this store.
    await Deno.symlink(`${victim}/precious`, `${root}/blobs/sha256/${hex}`);
    assert.equal(await store.has(digest), false);
    await refused(store.readBlob(digest), "store_invalid", /symbolic link/);
    assert.deepEqual(await Array.fromAsync(store.listBlobs()), []);
    await Deno.remove(`${root}/blobs/sha256/${hex}`);

    // An ingest directory that is a link: the link goes, the download starts over inside the store.
    await Deno.symlink(victim, `${root}/ingest/${hex}`);
    const writer = await store.ingest(digest, bytes.length);
    await writer.write(bytes);
    await writer.commit();
    assert.equal(await store.has(digest), true);
    await untouched(victim);

    await Deno.symlink(`${victim}/precious`, `${root}/blobs/sha256/${"0".repeat(64)}`);
    await Deno.writeTextFile(`${root}/blobs/sha256/not-a-digest`, "x");
    store.close();
    const checked = await runBerth(["--store", root, "fsck"]);
    assert.equal(checked.code, 1, checked.stdout);
    assert.match(checked.stdout, new RegExp(`not a blob: .*/blobs/sha256/${"0".repeat(64)}`));
    assert.match(checked.stdout, /not a blob: .*\/blobs\/sha256\/not-a-digest/);
    const repaired = await runBerth(["--store", root, "fsck", "--repair"]);
    assert.equal(repaired.code, 1, repaired.stdout);
    assert.equal((await runBerth(["--store", root, "fsck"])).code, 0);
    await untouched(victim);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("records in apps.json and agent.json are checked as read: a bad name, reference or digest is refused", async () => {
  const { dir, store: root } = await scratch();
  try {
    (await Store.open(root, { write: true, command: "test" })).close();
    const store = await Store.open(root, { write: false, command: "test" });
    const good = {
      name: "shop",
      ref: "registry.example.com/factory/shop:1",
      digest: `sha256:${"a".repeat(64)}`,
      installed: true,
      running: true,
      updatedAt: "",
    };
    const apps = (records: Record<string, unknown>) =>
      Deno.writeTextFile(`${root}/apps.json`, JSON.stringify({ version: 1, apps: records }));
    await apps({ shop: good });
    assert.equal((await readApps(store)).shop.digest, good.digest);
    for (
      const [records, pattern] of [
        [{ "..": { ...good, name: ".." } }, /apps\["\.\."\]\.name is not an app name/],
        [{ shop: { ...good, name: "other" } }, /apps\["shop"\]\.name is not an app name/],
        [{ shop: { ...good, digest: "sha256:../../x" } }, /apps\["shop"\]\.digest: "sha256:\.\.\/\.\.\/x"/],
        [{ shop: { ...good, previous: ["sha256:x"] } }, /apps\["shop"\]\.previous\[0\]/],
        [{ shop: { ...good, ref: "Not A Ref" } }, /invalid reference/],
      ] as const
    ) {
      await apps(records);
      await refused(readApps(store), "store_invalid", pattern);
    }
    const agent = (managed: Record<string, unknown>) =>
      Deno.writeTextFile(`${root}/agent.json`, JSON.stringify({ version: 1, apps: { shop: managed } }));
    await agent({ ref: good.ref, desiredDigest: good.digest });
    assert.equal((await readAgentState(store)).apps.shop.desiredDigest, good.digest);
    await agent({ ref: good.ref, failedDigest: "sha256:../x" });
    await refused(readAgentState(store), "store_invalid", /apps\["shop"\]\.failedDigest/);
    // An update record: its digests and the reference it rolls back to become installs and blob paths.
    const update = {
      digest: good.digest,
      step: "verifying",
      since: "2026-12-02T10:00:00.000Z",
      previous: { ref: good.ref, digest: good.digest, previous: [] },
    };
    await agent({ ref: good.ref, update });
    assert.equal((await readAgentState(store)).apps.shop.update?.step, "verifying");
    for (
      const [bad, pattern] of [
        [{ ...update, digest: "sha256:../x" }, /apps\["shop"\]\.update\.digest/],
        [{ ...update, step: "rm -rf" }, /apps\["shop"\]\.update\.step is unknown/],
        [{ ...update, since: "yesterday" }, /apps\["shop"\]\.update\.since is not a time/],
        [{ ...update, outcome: "maybe" }, /apps\["shop"\]\.update\.outcome is unknown/],
        [{ ...update, previous: { ...update.previous, ref: "Not A Ref" } }, /invalid reference/],
        [{ ...update, previous: { ...update.previous, previous: ["sha256:x"] } }, /previous\.previous\[0\]/],
      ] as const
    ) {
      await agent({ ref: good.ref, update: bad });
      await refused(readAgentState(store), "store_invalid", pattern);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
