/**
 * `deno task bench`: berth against skopeo and docker on the same images from the same local registry, each
 * tool starting from the same empty state every run, alternating which goes first; median of
 * BERTH_BENCH_RUNS runs (default 3) with peak RSS from GNU time. Figures, not assertions.
 *
 * Comparisons per image set (BERTH_BENCH_SETS, a comma list; default all of bench, 1, 3, 10, 512MiB,
 * debian3): fetch, restore, the engine's `sync -f` alone, and fetch + install of an app. Once, on the
 * "bench" set: re-served bytes after 8 kill -9s, bytes an update fetches, and time to the agent's first
 * /status. Writes report.md, results.json and chart.svg into `--out DIR` (or BERTH_BENCH_OUT, else a fresh
 * directory under the system temp dir), prints the directory and the tables.
 */
import { ensurePackages, run, startDockerd } from "../harness/services.ts";
import { startServices } from "../harness/images.ts";
import { compareSet } from "./contenders.ts";
import { resumeAfterKills, statusLatency, updateBytes } from "./extras.ts";
import type { ComparisonResult } from "./measure.ts";
import { type BenchResults, type HostFacts, markdownReport, tables } from "./report.ts";
import { buildSet, type ImageSet, SET_NAMES, type SetBuilder } from "./sets.ts";
import { chartSvg } from "./svg.ts";

/** Whether `name` is an executable on PATH. */
function onPath(name: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}

/** The output directory: `--out DIR`, else BERTH_BENCH_OUT, else a fresh one under the system temp dir. */
async function outputDir(args: string[]): Promise<string> {
  const at = args.indexOf("--out");
  const given = at >= 0 ? args[at + 1] : args.find((arg) => arg.startsWith("--out="))?.slice(6);
  const dir = given ?? Deno.env.get("BERTH_BENCH_OUT");
  if (dir === undefined) return await Deno.makeTempDir({ prefix: "berth-bench-report-" });
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** The sets BERTH_BENCH_SETS names, in the bench's order; all when unset. */
function chosenSets(): string[] {
  const wanted = (Deno.env.get("BERTH_BENCH_SETS") ?? SET_NAMES.join(",")).split(",").map((name) =>
    name.trim()
  )
    .filter(Boolean);
  const unknown = wanted.filter((name) => !SET_NAMES.includes(name));
  if (unknown.length) throw new Error(`BERTH_BENCH_SETS: unknown ${unknown.join(", ")}; known: ${SET_NAMES}`);
  return SET_NAMES.filter((name) => wanted.includes(name));
}

/** Writes report.md, results.json and chart.svg. */
async function writeOutputs(out: string, results: BenchResults): Promise<void> {
  await Deno.writeTextFile(`${out}/results.json`, JSON.stringify(results, null, 2) + "\n");
  await Deno.writeTextFile(`${out}/report.md`, markdownReport(results));
  await Deno.writeTextFile(`${out}/chart.svg`, chartSvg(results.comparisons));
}

async function main(): Promise<void> {
  const runs = Number(Deno.env.get("BERTH_BENCH_RUNS") ?? "3");
  const setNames = chosenSets();
  const out = await outputDir(Deno.args);
  console.log(`bench: writing the report to ${out}`);
  await ensurePackages();
  const tmp = await Deno.makeTempDir({ prefix: "berth-bench-" });
  const services = await startServices(tmp);
  const engine = await startDockerd(`${tmp}/engine`).catch(async (error) => {
    await services.stop();
    throw error;
  });
  try {
    const host: HostFacts = {
      cores: navigator.hardwareConcurrency,
      docker: (await run(["docker", "-H", engine.host, "version", "--format", "{{.Server.Version}}"])).trim(),
      pigz: onPath("pigz"),
      unpigz: onPath("unpigz"),
      runs,
      sets: [],
    };
    const results: BenchResults = { host, comparisons: [], extras: {} };
    const builder: SetBuilder = {
      tmp,
      registry: services.registry.host,
      docker: services.dockerd.host,
      images: services.images,
    };
    let benchSet: ImageSet | undefined;
    for (const name of setNames) {
      console.error(`bench: set ${name}`);
      const set = await buildSet(builder, name);
      host.sets.push({ name, description: set.description });
      if (name === "bench") benchSet = set;
      const dir = `${tmp}/set-${name}`;
      const measured: ComparisonResult[] = await compareSet({ set, dir, engine, runs });
      results.comparisons.push(...measured);
      await Deno.remove(dir, { recursive: true });
      await writeOutputs(out, results);
    }
    if (benchSet) {
      console.error("bench: extras on the bench set");
      const dir = `${tmp}/extras`;
      await Deno.mkdir(dir);
      results.extras.resume = await resumeAfterKills(builder, benchSet, dir);
      results.extras.update = await updateBytes(builder, benchSet, dir);
      results.extras.statusMs = await statusLatency(engine, dir);
    }
    await writeOutputs(out, results);
    console.log(tables(results.comparisons));
    console.log(`bench: report.md, results.json and chart.svg in ${out}`);
  } finally {
    await engine.stop();
    await services.stop();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

await main();
