/** The seeded generator behind random kill points: the same seed gives the same points; the seed is printed. */
import assert from "node:assert/strict";
import { mulberry32, SEED_VARIABLE, seededRandom } from "./seed.ts";

Deno.test("the same seed gives the same numbers, all in [0, 1); another seed gives others", () => {
  const take = (seed: number) => Array.from({ length: 1000 }, mulberry32(seed).next);
  const first = take(42);
  assert.deepEqual(take(42), first);
  assert.notDeepEqual(take(43), first);
  assert.ok(first.every((value) => value >= 0 && value < 1));
  assert.ok(new Set(first).size > 990, "the numbers are spread, not stuck");
  const below = mulberry32(7);
  const picks = Array.from({ length: 1000 }, () => below.below(15));
  assert.ok(picks.every((pick) => Number.isInteger(pick) && pick >= 0 && pick < 15));
  assert.equal(new Set(picks).size, 15, "every value below the bound comes up");
});

Deno.test("BERTH_TEST_SEED replays a run; without it a fresh seed is made; both are printed", () => {
  const before = Deno.env.get(SEED_VARIABLE);
  const printed: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => printed.push(args.join(" "));
  try {
    Deno.env.set(SEED_VARIABLE, "3735928559");
    const replay = seededRandom("replayed");
    assert.equal(replay.seed, 3735928559);
    assert.equal(replay.next(), mulberry32(3735928559).next());
    Deno.env.set(SEED_VARIABLE, "0xdeadbeef");
    assert.equal(seededRandom("hex").seed, 0xdeadbeef);
    Deno.env.delete(SEED_VARIABLE);
    const fresh = seededRandom("fresh");
    assert.deepEqual(printed, [
      `replayed: seed=3735928559 (replay with ${SEED_VARIABLE}=3735928559)`,
      `hex: seed=3735928559 (replay with ${SEED_VARIABLE}=3735928559)`,
      `fresh: seed=${fresh.seed} (replay with ${SEED_VARIABLE}=${fresh.seed})`,
    ]);
    for (const bad of ["-1", "1.5", "4294967296", "soon"]) {
      Deno.env.set(SEED_VARIABLE, bad);
      assert.throws(
        () => seededRandom("bad"),
        new RegExp(`^Error: ${SEED_VARIABLE}="${bad}": expected an integer`),
      );
    }
  } finally {
    console.log = log;
    if (before === undefined) Deno.env.delete(SEED_VARIABLE);
    else Deno.env.set(SEED_VARIABLE, before);
  }
});
