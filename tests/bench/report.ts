/**
 * The bench's report, from its samples: Markdown (a table per comparison, the extras, the host) and the
 * JSON of every sample. Pure functions, so they are unit-tested without services.
 */
import type { ComparisonResult, Sample } from "./measure.ts";

/** The figures measured once, on the "bench" set, beside the comparisons. */
export interface Extras {
  /** A pull killed with SIGKILL `kills` times, then finished: blob bytes served vs the set's distinct bytes. */
  resume?: { kills: number; servedBytes: number; distinctBytes: number };
  /** An app update that changes one image's top layer: blob bytes fetched vs the bytes of the new blobs. */
  update?: { fetchedBytes: number; changedBytes: number };
  /** Milliseconds from starting `berth agent` to its first 200 on GET /status, one per start. */
  statusMs?: number[];
}

/** What the numbers were measured on. */
export interface HostFacts {
  cores: number;
  docker: string;
  pigz: boolean;
  unpigz: boolean;
  runs: number;
  /** Each set's name and what it holds. */
  sets: { name: string; description: string }[];
}

/** Everything `results.json` holds. */
export interface BenchResults {
  host: HostFacts;
  comparisons: ComparisonResult[];
  extras: Extras;
}

/** The median of `values` (the upper middle one for an even count); NaN for none. */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/** The median seconds of some samples. */
export function medianSeconds(samples: Sample[]): number {
  return median(samples.map((sample) => sample.seconds));
}

/** The highest peak RSS of some samples, in MiB. */
export function peakRssMiB(samples: Sample[]): number {
  return Math.max(...samples.map((sample) => sample.peakRssKiB)) / 1024;
}

const fixed = (value: number, digits: number) => Number.isFinite(value) ? value.toFixed(digits) : "—";
/** Seconds with three decimals below one second (sync -f is short), two above. */
const secondsText = (value: number) => fixed(value, value < 1 ? 3 : 2);

/** One Markdown table for every result of `comparison`: a row per set and tool. */
export function comparisonTable(comparison: string, results: ComparisonResult[]): string {
  const rows = [
    `### ${comparison}`,
    "",
    "| set | MB | tool | median s | MB/s | peak RSS MiB | berth ÷ tool | runs s |",
    "|---|---:|---|---:|---:|---:|---:|---|",
  ];
  for (const result of results.filter((each) => each.comparison === comparison)) {
    const berth = medianSeconds(result.contenders[0].samples);
    for (const [index, contender] of result.contenders.entries()) {
      const seconds = medianSeconds(contender.samples);
      const ratio = index === 0 ? "—" : fixed(berth / seconds, 2);
      const mbPerSecond = result.megabytes > 0 ? fixed(result.megabytes / seconds, 0) : "—";
      const runs = contender.samples.map((sample) => secondsText(sample.seconds)).join(" ");
      rows.push(
        `| ${result.set} | ${result.megabytes.toFixed(1)} | ${contender.name} | ${secondsText(seconds)} | ` +
          `${mbPerSecond} | ${fixed(peakRssMiB(contender.samples), 1)} | ${ratio} | ${runs} |`,
      );
    }
  }
  return rows.join("\n");
}

/** The comparisons' names in the order they were first measured. */
export function comparisonNames(results: ComparisonResult[]): string[] {
  return [...new Set(results.map((result) => result.comparison))];
}

/** All comparison tables, one after the other: what the bench prints. */
export function tables(results: ComparisonResult[]): string {
  return comparisonNames(results).map((name) => comparisonTable(name, results)).join("\n\n") + "\n";
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** The extras as Markdown bullet points; a line saying so for each one not measured. */
export function extrasSection(extras: Extras): string {
  const lines = ["## Extras (bench set)", ""];
  const { resume, update, statusMs } = extras;
  lines.push(
    resume
      ? `- Re-served bytes after ${resume.kills} kill -9s mid-pull: ${mb(resume.servedBytes)} served for ` +
        `${mb(resume.distinctBytes)} distinct (ratio ${fixed(resume.servedBytes / resume.distinctBytes, 3)})`
      : "- Re-served bytes after kill -9s: not measured",
  );
  lines.push(
    update
      ? `- Update fetching one changed top layer: ${mb(update.fetchedBytes)} fetched for ` +
        `${mb(update.changedBytes)} of new blobs (ratio ${
          fixed(update.fetchedBytes / update.changedBytes, 3)
        })`
      : "- Update bytes: not measured",
  );
  lines.push(
    statusMs?.length
      ? `- Agent start to first 200 on GET /status: median ${fixed(median(statusMs), 0)} ms ` +
        `(runs: ${statusMs.map((ms) => ms.toFixed(0)).join(" ")} ms)`
      : "- Time to first /status: not measured",
  );
  return lines.join("\n");
}

/** The whole report.md. */
export function markdownReport(results: BenchResults): string {
  const { host } = results;
  return [
    "# berth bench",
    "",
    `Host: ${host.cores} cores, docker ${host.docker}, pigz ${host.pigz ? "on" : "not on"} PATH, unpigz ` +
    `${
      host.unpigz ? "on" : "not on"
    } PATH. Median of ${host.runs} runs, alternating which tool goes first; ` +
    "every tool starts from the same empty state. Ratio below 1: berth is faster. Peak RSS is GNU time's " +
    "(for a shell running several processes, the largest single one). MB are 10^6 bytes of the set as " +
    "berth's store holds it.",
    "",
    "Image sets:",
    "",
    ...host.sets.map((set) => `- ${set.name}: ${set.description}`),
    "",
    "## Comparisons",
    "",
    tables(results.comparisons),
    extrasSection(results.extras),
    "",
    "![seconds per set](chart.svg)",
    "",
  ].join("\n");
}
