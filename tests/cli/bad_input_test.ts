/**
 * Bad input gets one clear line on stderr, exit 1 (2 for usage errors), and leaves the store untouched.
 */
import assert from "node:assert/strict";
import { runBerth, scratchDir, snapshotTree, testEnv, withServices } from "../harness/env.ts";
import { run } from "../harness/services.ts";
import { startFaultProxy } from "../harness/fault_proxy.ts";

function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line expected, got: ${stderr}`);
  assert.match(lines[0], pattern);
}

Deno.test({
  name: "bad references, hosts, tags and manifests fail with one line and leave the store untouched",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const store = await scratchDir("bad-input-");
    const seeded = await runBerth(["--store", store, "pull", env.images.base.ref]);
    assert.equal(seeded.code, 0, seeded.stderr);
    const before = await snapshotTree(store);

    // What the real registry refuses to store, a misbehaving one may serve: answered by the proxy.
    const proxy = await startFaultProxy(env.registry);
    const manifest = (extra: Record<string, unknown>) =>
      new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: env.images.base.configDigest,
          size: 1,
        },
        layers: [],
        ...extra,
      }));
    proxy.overrideResponse("/v2/berth-test/oversized/manifests/1", {
      contentType: "application/vnd.oci.image.manifest.v1+json",
      body: manifest({ annotations: { filler: "x".repeat(4 * 1024 * 1024) } }),
    });
    proxy.overrideResponse("/v2/berth-test/schema1/manifests/1", {
      contentType: "application/vnd.docker.distribution.manifest.v1+prettyjws",
      body: new TextEncoder().encode(JSON.stringify({ schemaVersion: 1, name: "x", tag: "1", fsLayers: [] })),
    });
    proxy.overrideResponse("/v2/berth-test/contradiction/manifests/1", {
      contentType: "application/vnd.docker.distribution.manifest.v2+json",
      body: manifest({}),
    });

    const cases: [string, RegExp][] = [
      ["Not/A Reference", /^berth: invalid reference "Not\/A Reference": /],
      ["127.0.0.1:5000/x@sha256:1234", /^berth: invalid reference "127\.0\.0\.1:5000\/x@sha256:1234": /],
      ["berth-test.invalid/app:1", /^berth: cannot resolve registry host berth-test\.invalid for manifest/],
      [`${env.registry}/berth-test/app-a:no-such-tag`, /^berth: .*app-a:no-such-tag: not found in registry/],
      [`${env.registry}/berth-test/no-such-repo:1`, /^berth: .*no-such-repo:1: not found in registry/],
      [
        `${proxy.host}/berth-test/oversized:1`,
        /^berth: .*oversized:1: manifest is \d+ bytes, over the 4194304-byte limit/,
      ],
      [
        `${proxy.host}/berth-test/schema1:1`,
        /^berth: .*schema1:1: unsupported manifest media type "application\/vnd\.docker\.distribution\.manifest\.v1\+prettyjws"/,
      ],
      [
        `${proxy.host}/berth-test/contradiction:1`,
        /^berth: .*contradiction:1: manifest says mediaType application\/vnd\.oci\.image\.manifest\.v1\+json but was served as application\/vnd\.docker/,
      ],
    ];
    for (const [ref, pattern] of cases) {
      const result = await runBerth(["--store", store, "pull", ref]);
      assert.equal(result.code, 1, `${ref}: ${result.stderr}`);
      assertOneLine(result.stderr, pattern);
    }
    await proxy.close();
    assert.deepEqual(await snapshotTree(store), before, "the store is untouched");
  },
});

Deno.test({
  name: "a store path that is a file, or on a read-only mount, fails clearly",
  ...withServices,
  async fn() {
    const env = testEnv()!;
    const dir = await scratchDir("bad-store-");
    await Deno.writeTextFile(`${dir}/file`, "not a store");
    const onFile = await runBerth(["--store", `${dir}/file`, "pull", env.images.base.ref]);
    assert.equal(onFile.code, 1);
    assertOneLine(onFile.stderr, /^berth: store path .*\/file is not a directory/);
    assert.equal(await Deno.readTextFile(`${dir}/file`), "not a store");

    const mount = `${dir}/ro`;
    await Deno.mkdir(mount);
    await run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", mount]);
    try {
      const readOnly = await runBerth(["--store", `${mount}/store`, "pull", env.images.base.ref]);
      assert.equal(readOnly.code, 1);
      assertOneLine(readOnly.stderr, /^berth: store .*\/ro\/store is on a read-only file system/);
    } finally {
      await run(["umount", mount]);
    }

    const foreign = `${dir}/foreign`;
    await Deno.mkdir(foreign);
    await Deno.writeTextFile(`${foreign}/precious.txt`, "keep me");
    const notOurs = await runBerth(["--store", foreign, "pull", env.images.base.ref]);
    assert.equal(notOurs.code, 1);
    assertOneLine(notOurs.stderr, /is not a berth store/);
    const names = (await Array.fromAsync(Deno.readDir(foreign))).map((entry) => entry.name);
    assert.deepEqual(names, ["precious.txt"], "nothing is written into a directory that is not a store");
  },
});

Deno.test("usage errors exit 2; --help exits 0 on every command", async () => {
  const unknown = await runBerth(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assertOneLine(unknown.stderr, /unknown command "frobnicate"/);
  const noRefs = await runBerth(["pull"]);
  assert.equal(noRefs.code, 2);
  const badOption = await runBerth(["ls", "--colour"]);
  assert.equal(badOption.code, 2);
  assertOneLine(badOption.stderr, /unknown option "--colour"/);
  for (const command of ["pull", "ls", "fsck", "version"]) {
    const help = await runBerth([command, "--help"]);
    assert.equal(help.code, 0, command);
    assert.match(help.stdout, new RegExp(`Usage: berth \\[global options\\] ${command}`));
  }
  const version = await runBerth(["--json", "version"]);
  assert.equal(version.code, 0);
  assert.equal(JSON.parse(version.stdout).storeLayoutVersion, 1);
});
