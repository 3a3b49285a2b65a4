/** The storage pre-flight's arithmetic and df parsing (the real check runs in tests/agent/). */
import assert from "node:assert/strict";
import {
  judge,
  parseLayerUsage,
  storeNeed,
  UNPACK_ESTIMATE_FACTOR,
  unpackedBytes,
} from "../../src/fetch/preflight.ts";
import { parseDf, spaceOf } from "../../src/util/disk_space.ts";
import type { PullPlan } from "../../src/fetch/pull.ts";

const MiB = 1024 * 1024;

Deno.test("df -P output from coreutils and busybox, mount points with spaces", () => {
  const coreutils = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n" +
    "/dev/vda         264212084 24928056  81462856      24% /\n";
  assert.deepEqual(parseDf(coreutils, "/var/lib/berth"), {
    path: "/var/lib/berth",
    mountedOn: "/",
    sizeBytes: 264212084 * 1024,
    usedBytes: 24928056 * 1024,
    freeBytes: 81462856 * 1024,
  });
  const busybox = "Filesystem           1024-blocks    Used Available Capacity Mounted on\n" +
    "tmpfs                    16384      0     16384   0% /media/my data\n";
  const parsed = parseDf(busybox, "/media/my data/store");
  assert.equal(parsed.mountedOn, "/media/my data");
  assert.equal(parsed.freeBytes, 16 * MiB);
  assert.throws(() => parseDf("df: /nope: No such file or directory\n", "/nope"), /unexpected df output/);
});

Deno.test("the policy: reserve and watermark both bind; nothing needed always fits", () => {
  const disk = { path: "/s", mountedOn: "/", sizeBytes: 100 * MiB, freeBytes: 20 * MiB };
  const policy = { watermark: 95, reserve: 5 * MiB };
  assert.ok(judge(disk, "store", 10 * MiB, policy).fits);
  assert.ok(!judge(disk, "store", 16 * MiB, policy).fits, "would leave 4 MiB, under the reserve");
  const strict = { watermark: 85, reserve: 0 };
  assert.ok(judge(disk, "store", 5 * MiB, strict).fits, "85% used after");
  assert.ok(!judge(disk, "store", 6 * MiB, strict).fits, "86% used after");
  assert.ok(judge({ ...disk, freeBytes: 0 }, "store", 0, policy).fits);
  const check = judge(disk, "store", 10 * MiB, policy);
  assert.equal(check.freeAfter, 10 * MiB);
  assert.equal(check.usedPercentAfter, 90);
});

Deno.test("the watermark is of used + available, as df's Capacity: root's reserved blocks are not counted used", () => {
  // 100 MiB, 5 MiB reserved for root: 55 used, 40 available (df: 58% used).
  const disk = { path: "/s", mountedOn: "/", sizeBytes: 100 * MiB, usedBytes: 55 * MiB, freeBytes: 40 * MiB };
  const check = judge(disk, "store", 30 * MiB, { watermark: 90, reserve: 0 });
  assert.equal(check.usedPercentAfter, (85 / 95) * 100);
  assert.ok(check.fits, "89.5% of what can be used");
  assert.ok(!judge(disk, "store", 31 * MiB, { watermark: 90, reserve: 0 }).fits, "90.5%");
});

Deno.test("the store needs what is missing: partial downloads count their remainder, manifests in full", () => {
  const plan: PullPlan = {
    refs: [],
    manifestBytes: 1000,
    blobs: new Map([
      ["a", { digest: "a", size: 10 * MiB, bytesDone: 10 * MiB }],
      ["b", { digest: "b", size: 8 * MiB, bytesDone: 3 * MiB }],
      ["c", { digest: "c", size: 2 * MiB, bytesDone: 0 }],
    ]),
  };
  assert.equal(storeNeed(plan), 7 * MiB + 1000);
});

Deno.test("free space of a path that does not exist yet is its nearest existing parent's", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const space = await spaceOf(`${dir}/not/yet/a/store`);
    assert.ok(space.sizeBytes > 0 && space.freeBytes > 0);
    assert.equal(space.device, (await Deno.stat(dir)).dev);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("layers meta gives the unpacked size per layer for the platform's arch; anything else gives none", async () => {
  const golden = await Deno.readFile(new URL("../app/fixtures/layers-meta.json.golden", import.meta.url));
  assert.deepEqual(
    parseLayerUsage(golden, "amd64"),
    new Map([[`sha256:${"a".repeat(64)}`, 7532544], [`sha256:${"b".repeat(64)}`, 8192]]),
  );
  assert.deepEqual(parseLayerUsage(golden, "arm64"), new Map([[`sha256:${"c".repeat(64)}`, 6443008]]));
  assert.equal(parseLayerUsage(golden, "riscv64").size, 0);
  assert.equal(parseLayerUsage(new TextEncoder().encode("{not json"), "amd64").size, 0);
  const bad = JSON.stringify({
    amd64: { layers: { "sha256:x": { usage: -1 }, "sha256:y": { usage: "9" } } },
  });
  assert.equal(parseLayerUsage(new TextEncoder().encode(bad), "amd64").size, 0);
});

Deno.test("unpacked size: usage where known, else the estimate; a shared base once, a layer on another base again", () => {
  const layer = (name: string, size: number) => ({ mediaType: "x", digest: `sha256:${name}`, size });
  const base = layer("base", 4 * MiB);
  const web = { layers: [base, layer("web", 2 * MiB)] };
  const api = { layers: [base, layer("api", MiB)] };
  const usage = new Map([["sha256:base", 10 * MiB]]);
  assert.equal(unpackedBytes([web], usage), 10 * MiB + 2 * MiB * UNPACK_ESTIMATE_FACTOR);
  assert.equal(
    unpackedBytes([web, api], usage),
    10 * MiB + (2 * MiB + MiB) * UNPACK_ESTIMATE_FACTOR,
    "the base counted once",
  );
  // The same "web" layer on top of another base is another chain: the engine stores it again.
  const elsewhere = { layers: [layer("other", MiB), layer("web", 2 * MiB)] };
  assert.equal(
    unpackedBytes([web, elsewhere], new Map()),
    (4 * MiB + 2 * MiB + MiB + 2 * MiB) * UNPACK_ESTIMATE_FACTOR,
  );
  assert.equal(unpackedBytes([], usage), 0);
});
