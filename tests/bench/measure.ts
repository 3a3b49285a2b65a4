/**
 * Timing for the bench: one command under GNU time (wall seconds, peak RSS), and a comparison that runs
 * each contender in turn from the same empty state, rotating who goes first each round.
 */

/** One timed run. */
export interface Sample {
  seconds: number;
  /** Peak RSS in KiB as GNU time reports it: for a shell running several processes, the largest one. */
  peakRssKiB: number;
}

/** One tool in a comparison. */
export interface Contender {
  name: string;
  /** Runs once, timed; `round` picks fresh directories. */
  run(round: number): Promise<Sample>;
  /** Brings the state back to empty, untimed. */
  reset?(round: number): Promise<void>;
}

/** Every sample of one comparison on one image set. */
export interface ComparisonResult {
  /** The image set's name, e.g. "bench" or "10". */
  set: string;
  /** Which comparison, e.g. "fetch". */
  comparison: string;
  /** Bytes the set holds in berth's store, in MB (10^6), for MB/s. */
  megabytes: number;
  /** The first contender is berth's; the others are what it is compared with. */
  contenders: { name: string; samples: Sample[] }[];
}

/** Runs `command` under GNU time and returns its wall time and peak RSS; throws when it fails. */
export async function timed(command: string[]): Promise<Sample> {
  // Wall time from our own clock: GNU time's %e has only hundredths, too coarse for sync -f.
  const started = performance.now();
  const output = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "BENCH %e %M", ...command],
    stdout: "null",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - started) / 1000;
  const stderr = new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`${command.join(" ")} failed:\n${stderr.slice(-3000)}`);
  const match = /BENCH ([\d.]+) (\d+)/.exec(stderr);
  if (!match) throw new Error(`no timing from GNU time:\n${stderr}`);
  return { seconds, peakRssKiB: Number(match[2]) };
}

/** Runs every contender `runs` times, rotating who goes first each round, and returns every sample. */
export async function compare(
  set: string,
  comparison: string,
  megabytes: number,
  contenders: Contender[],
  runs: number,
): Promise<ComparisonResult> {
  const samples = contenders.map(() => [] as Sample[]);
  for (let round = 0; round < runs; round++) {
    for (let turn = 0; turn < contenders.length; turn++) {
      const index = (turn + round) % contenders.length;
      samples[index].push(await contenders[index].run(round));
      await contenders[index].reset?.(round);
      // What the run left dirty is written back now, not during the next contender's run.
      await new Deno.Command("sync").output();
    }
  }
  return {
    set,
    comparison,
    megabytes,
    contenders: contenders.map((contender, index) => ({ name: contender.name, samples: samples[index] })),
  };
}
