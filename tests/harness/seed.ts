/**
 * Replayable randomness for tests that kill a process at a random point: the seed comes from
 * BERTH_TEST_SEED or is made fresh, and is printed, so a failure seen once can be run again with the same
 * kill points.
 */

/** The environment variable a failed run's seed is given back through. */
export const SEED_VARIABLE = "BERTH_TEST_SEED";

/** A source of numbers in [0, 1) that the same seed always repeats. */
export interface SeededRandom {
  /** The 32-bit seed this source started from. */
  readonly seed: number;
  /** The next number in [0, 1). */
  next(): number;
  /** The next integer in [0, below). */
  below(below: number): number;
}

/**
 * A generator for the test named `what`: seeded from BERTH_TEST_SEED when set (a decimal or 0x-hex 32-bit
 * number, else it throws naming the value), otherwise from fresh randomness; prints the seed and how to
 * replay it either way.
 */
export function seededRandom(what: string): SeededRandom {
  const given = Deno.env.get(SEED_VARIABLE);
  let seed: number;
  if (given === undefined || given === "") {
    seed = crypto.getRandomValues(new Uint32Array(1))[0];
  } else {
    const parsed = Number(given.trim());
    if (!Number.isInteger(parsed) || parsed < 0 || parsed > 0xffff_ffff) {
      throw new Error(`${SEED_VARIABLE}="${given}": expected an integer from 0 to 4294967295`);
    }
    seed = parsed;
  }
  console.log(`${what}: seed=${seed} (replay with ${SEED_VARIABLE}=${seed})`);
  return mulberry32(seed);
}

/**
 * Mulberry32: a 32-bit state, one multiply-xorshift round per number. Far from cryptographic, but enough to
 * spread kill points, and small enough to be obviously deterministic.
 */
export function mulberry32(seed: number): SeededRandom {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 0x1_0000_0000;
  };
  return { seed: seed >>> 0, next, below: (below) => Math.floor(next() * below) };
}
