/** The storage pre-flight's arithmetic and df parsing (the real check runs in tests/agent/). */
import assert from "node:assert/strict";
import { judge, parseDf, spaceOf, storeNeed } from "../../src/store/space.ts";
import type { PullPlan } from "../../src/fetch/pull.ts";

const MiB = 1024 * 1024;

Deno.test("df -P output from coreutils and busybox, mount points with spaces", () => {
  const coreutils = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n" +
    "/dev/vda         264212084 24928056  81462856      24% /\n";
  assert.deepEqual(parseDf(coreutils, "/var/lib/berth"), {
    path: "/var/lib/berth",
    mountedOn: "/",
    sizeBytes: 264212084 * 1024,
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
