/** LoadOrder, pure: shared chains are sent by one load at a time, independent images go together. */
import assert from "node:assert/strict";
import { LoadOrder } from "../../src/docker/load_order.ts";

Deno.test("load order: images on one base wait for the first to bring it, then go together", () => {
  const order = new LoadOrder<string>(new Set(), 2);
  order.add({ item: "a", chains: ["base", "base/a"] });
  order.add({ item: "b", chains: ["base", "base/b"] });
  order.add({ item: "c", chains: ["base", "base/c"] });
  const first = order.next()!;
  assert.equal(first.item, "a");
  assert.equal(order.next(), undefined, "b and c need the base a is sending");
  order.done(first, true);
  assert.deepEqual(order.missing({ item: "b", chains: ["base", "base/b"] }), ["base/b"]);
  const second = order.next()!;
  const third = order.next()!;
  assert.deepEqual([second.item, third.item], ["b", "c"]);
  assert.equal(order.next(), undefined);
  assert.equal(order.running, 2);
});

Deno.test("load order: a base of another first, then the largest; a failed load frees its chains", () => {
  const order = new LoadOrder<string>(new Set(["known"]), 2);
  order.add({ item: "x", chains: ["x1"], sizes: [10] });
  order.add({ item: "y", chains: ["known", "y1"], sizes: [50, 20] });
  order.add({ item: "z", chains: ["x1", "z1"], sizes: [10, 1] });
  order.add({ item: "w", chains: ["w1"], sizes: [1] });
  // x is z's base: first. Then y sends 20 bytes (its base is known), w 1; z waits for x1.
  const x = order.next()!;
  const y = order.next()!;
  assert.deepEqual([x.item, y.item], ["x", "y"]);
  assert.equal(order.next(), undefined, "the limit");
  order.done(x, false);
  // x1 is no longer being sent and is still missing: z sends it itself.
  const z = order.next()!;
  assert.equal(z.item, "z");
  assert.deepEqual(order.missing(z), ["x1", "z1"]);
  order.done(y, true);
  assert.ok(order.known.has("y1"));
  assert.equal(order.next()!.item, "w");
  assert.equal(order.waiting, 0);
});
