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

Deno.test("load order: unrelated images start at once up to the limit; a failed load frees its chains", () => {
  const order = new LoadOrder<string>(new Set(["known"]), 2);
  order.add({ item: "x", chains: ["x1"] });
  order.add({ item: "y", chains: ["known", "y1"] });
  order.add({ item: "z", chains: ["x1", "z1"] });
  order.add({ item: "w", chains: ["w1"] });
  const x = order.next()!;
  const y = order.next()!;
  assert.deepEqual([x.item, y.item], ["x", "y"]);
  assert.equal(order.next(), undefined, "the limit");
  order.done(x, false);
  // z needs x1, which is no longer being sent and is still missing: z sends it itself.
  const z = order.next()!;
  assert.equal(z.item, "z");
  assert.deepEqual(order.missing(z), ["x1", "z1"]);
  order.done(y, true);
  assert.ok(order.known.has("y1"));
  assert.equal(order.next()!.item, "w");
  assert.equal(order.waiting, 0);
});
