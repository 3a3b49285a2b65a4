/**
 * LoadOrder, pure: each missing chain is sent by one load only, one load uploads at a time, and a load that
 * leaves out chains another is sending starts at once and knows which loads its request must end after.
 */
import assert from "node:assert/strict";
import { LoadOrder } from "../../src/docker/load_order.ts";

Deno.test("load order: images on one base upload while the first one brings it, and end after it", () => {
  const order = new LoadOrder<string>(new Set(), 3, 1);
  order.add({ item: "a", chains: ["base", "base/a"] });
  order.add({ item: "b", chains: ["base", "base/b"] });
  order.add({ item: "c", chains: ["base", "base/c"] });
  const first = order.next()!;
  assert.equal(first.item, "a");
  assert.deepEqual(order.sends(first), ["base", "base/a"]);
  assert.deepEqual(order.after(first), []);
  assert.equal(order.next(), undefined, "a is uploading: one upload at a time");
  order.uploaded(first);
  const second = order.next()!;
  assert.equal(second.item, "b");
  assert.deepEqual(order.sends(second), ["base/b"], "the base is a's to send");
  assert.deepEqual(order.after(second), [first], "b's request ends after a's");
  order.uploaded(second);
  const third = order.next()!;
  assert.deepEqual(order.sends(third), ["base/c"]);
  assert.deepEqual(order.after(third), [first]);
  order.uploaded(third);
  assert.equal(order.next(), undefined);
  assert.equal(order.running, 3);
  order.done(first, true);
  assert.deepEqual(order.missing(second), ["base/b"]);
});

Deno.test("load order: a base of another first, then the largest; a failed load frees its chains", () => {
  const order = new LoadOrder<string>(new Set(["known"]), 2, 2);
  order.add({ item: "x", chains: ["x1"], sizes: [10] });
  order.add({ item: "y", chains: ["known", "y1"], sizes: [50, 20] });
  order.add({ item: "z", chains: ["x1", "z1"], sizes: [10, 1] });
  order.add({ item: "w", chains: ["w1"], sizes: [1] });
  // x is z's base: first. Then y sends 20 bytes (its base is known), z only 1 (x sends x1), w 1.
  const x = order.next()!;
  const y = order.next()!;
  assert.deepEqual([x.item, y.item], ["x", "y"]);
  assert.equal(order.next(), undefined, "the limit");
  order.done(x, false);
  // x1 is no longer being sent and is still missing: z sends it itself, and waits for nobody.
  const z = order.next()!;
  assert.equal(z.item, "z");
  assert.deepEqual(order.sends(z), ["x1", "z1"]);
  assert.deepEqual(order.after(z), []);
  order.done(y, true);
  assert.ok(order.known.has("y1"));
  assert.equal(order.next()!.item, "w");
  assert.equal(order.waiting, 0);
});

Deno.test("load order: a load may send a chain on top of one another load is sending", () => {
  const order = new LoadOrder<string>(new Set(), 2, 1);
  order.add({ item: "base", chains: ["b"], sizes: [5] });
  order.add({ item: "mid", chains: ["b", "b/m"], sizes: [5, 3] });
  const base = order.next()!;
  assert.equal(base.item, "base");
  order.uploaded(base);
  order.add({ item: "top", chains: ["b", "b/m", "b/m/t"], sizes: [5, 3, 1] });
  // mid is top's base now: mid first, sending b/m only, after base.
  const mid = order.next()!;
  assert.equal(mid.item, "mid");
  assert.deepEqual(order.sends(mid), ["b/m"]);
  assert.deepEqual(order.after(mid), [base]);
  assert.equal(order.next(), undefined, "the limit of two running");
  order.done(base, true);
  order.uploaded(mid);
  const top = order.next()!;
  assert.deepEqual(order.sends(top), ["b/m/t"]);
  assert.deepEqual(order.after(top), [mid]);
});

Deno.test("load order: the steps of one image go bottom up, however large the upper ones are", () => {
  const order = new LoadOrder<string>(new Set(), 3, 1);
  order.add({ item: "top", chains: ["c0", "c1", "c2", "c3"], sizes: [2, 100, 100, 60] });
  order.add({ item: "middle", chains: ["c0", "c1", "c2"], sizes: [2, 100, 100] });
  order.add({ item: "bottom", chains: ["c0", "c1"], sizes: [2, 100] });
  const bottom = order.next()!;
  assert.equal(bottom.item, "bottom");
  order.uploaded(bottom);
  const middle = order.next()!;
  assert.equal(middle.item, "middle");
  assert.deepEqual(order.sends(middle), ["c2"]);
  assert.deepEqual(order.after(middle), [bottom]);
  order.uploaded(middle);
  const top = order.next()!;
  assert.deepEqual(order.sends(top), ["c3"]);
  assert.deepEqual(order.after(top), [bottom, middle], "c0 to c2 come with the steps below");
});
