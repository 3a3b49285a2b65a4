/** The storage pre-flight's arithmetic and df parsing (the real check runs in tests/agent/). */
import assert from "node:assert/strict";
import {
  judge,
  parseLayerUsage,
  spaceReport,
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

const HEADER = "Filesystem     1024-blocks  Used Available Capacity Mounted on\n";

Deno.test("df of a filesystem that reports no capacity: 0 blocks (FUSE without statfs, ramfs) or '-' figures", () => {
  // coreutils on a FUSE filesystem that does not answer statfs: all zero, and "-" for the capacity.
  assert.deepEqual(
    parseDf(HEADER + "memfs                    0     0         0        - /mnt/x\n", "/mnt/x/s"),
    {
      path: "/mnt/x/s",
      mountedOn: "/mnt/x",
      sizeBytes: 0,
      usedBytes: 0,
      freeBytes: 0,
      capacityUnknown: "df reports 0 blocks",
    },
  );
  // busybox prints 0% for the same filesystem.
  const busybox = "Filesystem           1024-blocks    Used Available Capacity Mounted on\n" +
    "ramfs                        0         0         0   0% /run/power cut\n";
  const ramfs = parseDf(busybox, "/run/power cut/store");
  assert.equal(ramfs.capacityUnknown, "df reports 0 blocks");
  assert.equal(ramfs.mountedOn, "/run/power cut");
  // A FUSE mount named after its device.
  assert.equal(
    parseDf(HEADER + "/dev/fuse 0 0 0 - /media/sd card\n", "/media/sd card").mountedOn,
    "/media/sd card",
  );
  // coreutils prints "-" for figures it cannot know (an over-mounted device).
  const unknown = parseDf(HEADER + "/dev/sdb1 - - - - /mnt/old\n", "/mnt/old");
  assert.equal(unknown.capacityUnknown, "df reports no size");
  assert.equal(unknown.usedBytes, undefined);
  const noAvailable = parseDf(HEADER + "nfs:/x 1024 12 - - /mnt/nfs\n", "/mnt/nfs");
  assert.equal(noAvailable.capacityUnknown, "df reports no available space figure");
});

Deno.test("df with a size but nothing available is known: full, not unknown", () => {
  // Every free block reserved for root: used + available is 0, and coreutils prints "-" for the capacity.
  const full = parseDf(HEADER + "/dev/sdc1 1024 0 0 - /data\n", "/data");
  assert.equal(full.capacityUnknown, undefined);
  assert.equal(full.sizeBytes, MiB);
  assert.equal(full.freeBytes, 0);
  assert.ok(!judge(full, "store", 1, { watermark: 95, reserve: 0 }).fits);
  // A negative available figure (more reserved than free) is a figure too.
  assert.equal(parseDf(HEADER + "/dev/sdc1 1024 1000 -10 101% /data\n", "/data").freeBytes, -10 * 1024);
});

Deno.test("df output that is broken stays an error: no data line, words for figures, no capacity column", () => {
  for (
    const output of [
      "",
      "df: /nope: No such file or directory\n",
      HEADER,
      HEADER + "/dev/vda 264212084 24928056 81462856 /\n",
      HEADER + "/dev/vda big used free 24% /\n",
      HEADER + "/dev/vda 264212084 - 81462856 24 /\n",
      HEADER + "my disk 264212084 24928056 81462856 24%\n",
      "<html>Service Unavailable</html>\nsomething else entirely here\n",
    ]
  ) {
    assert.throws(() => parseDf(output, "/s"), /unexpected df output/, JSON.stringify(output));
  }
});

Deno.test("an unknown capacity fits with a note: the store is not judged, the report says why", () => {
  const policy = { watermark: 95, reserve: 5 * MiB };
  const unknown = {
    path: "/mnt/x/store",
    mountedOn: "/mnt/x",
    sizeBytes: 0,
    freeBytes: 0,
    capacityUnknown: "df reports 0 blocks",
    device: 7,
  };
  assert.ok(judge(unknown, "store", 40 * MiB, policy).fits, "an unknown capacity is never judged full");

  const alone = spaceReport({ space: unknown, need: 40 * MiB }, "engine not checked: no engine", policy);
  assert.deepEqual(alone.checks, []);
  assert.equal(alone.fits, true);
  assert.equal(
    alone.storeSkipped,
    "store not checked: /mnt/x/store is on /mnt/x, whose capacity is unknown (df reports 0 blocks); " +
      "the pull goes on, and fails only if the disk fills",
  );
  assert.equal(alone.engineSkipped, "engine not checked: no engine");

  // The engine's own filesystem is still judged, and can still refuse.
  const disk = {
    path: "/var/lib/docker",
    mountedOn: "/",
    sizeBytes: 100 * MiB,
    freeBytes: 20 * MiB,
    device: 1,
  };
  const engine = spaceReport({ space: unknown, need: 40 * MiB }, { space: disk, need: 30 * MiB }, policy);
  assert.deepEqual(engine.checks.map((check) => [check.what, check.fits]), [["engine", false]]);
  assert.equal(engine.fits, false);
  assert.match(engine.storeSkipped!, /^store not checked: /);

  // One unknown filesystem for both: neither side is judged, and both say so.
  const shared = spaceReport(
    { space: unknown, need: 40 * MiB },
    { space: { ...unknown, path: "/mnt/x/docker" }, need: 30 * MiB },
    policy,
  );
  assert.deepEqual(shared.checks, []);
  assert.equal(shared.fits, true);
  assert.match(shared.storeSkipped!, /^store not checked: /);
  assert.equal(
    shared.engineSkipped,
    "engine not checked: /mnt/x/docker is on /mnt/x, whose capacity is unknown (df reports 0 blocks)",
  );

  // An unknown engine filesystem beside a known store: the store is judged, the engine skipped.
  const store = { ...disk, path: "/var/lib/berth" };
  const other = spaceReport(
    { space: store, need: 10 * MiB },
    { space: { ...unknown, path: "/mnt/x/docker", device: 9 }, need: 30 * MiB },
    policy,
  );
  assert.deepEqual(other.checks.map((check) => [check.what, check.fits]), [["store", true]]);
  assert.equal(other.storeSkipped, undefined);
  assert.match(other.engineSkipped!, /^engine not checked: \/mnt\/x\/docker is on \/mnt\/x, whose capacity/);
});

Deno.test("known filesystems: one check each, or one for both when they share a device", () => {
  const policy = { watermark: 95, reserve: 0 };
  const disk = {
    path: "/var/lib/berth",
    mountedOn: "/",
    sizeBytes: 100 * MiB,
    freeBytes: 50 * MiB,
    device: 1,
  };
  const shared = spaceReport(
    { space: disk, need: 10 * MiB },
    { space: { ...disk, path: "/var/lib/docker" }, need: 20 * MiB },
    policy,
  );
  assert.deepEqual(shared.checks.map((check) => [check.what, check.needBytes]), [[
    "store and engine",
    30 * MiB,
  ]]);
  assert.equal(shared.storeSkipped, undefined);
  assert.equal(shared.engineSkipped, undefined);
  const apart = spaceReport(
    { space: disk, need: 10 * MiB },
    { space: { ...disk, path: "/var/lib/docker", device: 2 }, need: 20 * MiB },
    policy,
  );
  assert.deepEqual(apart.checks.map((check) => check.what), ["store", "engine"]);
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
