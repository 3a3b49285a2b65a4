/**
 * The four comparisons on one image set, each tool from the same empty state: fetch (berth pull vs skopeo
 * copy), restore (berth load vs skopeo oci→daemon vs docker load), the durability step alone (sync -f of
 * the engine's data root after a docker load), and fetch + install of an app (berth vs concurrent docker
 * pulls of its images).
 */
import { type Dockerd, run } from "../harness/services.ts";
import { PERMISSION_FLAGS } from "../../build/permissions.ts";
import { compare, type ComparisonResult, timed } from "./measure.ts";
import type { ImageSet } from "./sets.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** The berth command line: `deno run` of this checkout's main.ts, with the flags the binary is built with. */
export function berth(...args: string[]): string[] {
  return [Deno.execPath(), "run", "--cached-only", ...PERMISSION_FLAGS, "--quiet", MAIN, ...args];
}

/** What the comparisons of one set share. */
export interface SetRun {
  set: ImageSet;
  /** A fresh directory for this set's stores, archives and projects. */
  dir: string;
  /** The engine restores and installs go to; emptied between runs. */
  engine: Dockerd;
  runs: number;
}

/** Removes every image from the engine. */
export async function emptyEngine(engine: Dockerd): Promise<void> {
  const ids = (await run(["docker", "-H", engine.host, "image", "ls", "-aq"])).trim().split("\n")
    .filter(Boolean);
  if (ids.length) await run(["docker", "-H", engine.host, "rmi", "-f", ...new Set(ids)]);
}

/** The bytes of every blob in a berth store. */
export async function storeBytes(store: string): Promise<number> {
  let bytes = 0;
  for await (const entry of Deno.readDir(`${store}/blobs/sha256`)) {
    bytes += (await Deno.stat(`${store}/blobs/sha256/${entry.name}`)).size;
  }
  return bytes;
}

/** The shell command of berth's fetch + install of an app into an empty store and engine: `install --pull`. */
export function berthFetchAndInstall(appRef: string, store: string, composeRoot: string, dockerHost: string) {
  const device = ["--store", store, "--compose-root", composeRoot, "--docker-host", dockerHost];
  return berth(...device, "install", "--pull", appRef).join(" ");
}

/** The shell command of `docker pull` of every ref, one process per image, all at once; fails if any fails. */
export function concurrentDockerPulls(refs: string[], dockerHost: string): string {
  const pulls = refs.map((ref) => `docker -H ${dockerHost} pull -q ${ref} >/dev/null & pids+=($!)`);
  return [
    "pids=()",
    ...pulls,
    "failed=0",
    'for pid in "${pids[@]}"; do wait "$pid" || failed=1; done',
    "exit $failed",
  ]
    .join("\n");
}

/** Runs all comparisons on one set and returns their samples. */
export async function compareSet(setRun: SetRun): Promise<ComparisonResult[]> {
  const { set, dir, engine } = setRun;
  await Deno.mkdir(dir, { recursive: true });
  await emptyEngine(engine);
  const store = `${dir}/store`;
  await run(berth("--store", store, "pull", ...set.refs));
  const megabytes = (await storeBytes(store)) / 1e6;
  const results = [await fetchComparison(setRun, megabytes)];
  results.push(...await restoreComparisons(setRun, store, megabytes));
  results.push(await appComparison(setRun, megabytes));
  return results;
}

/** 1. fetch: berth pull vs skopeo copy of each image into an OCI layout. */
function fetchComparison({ set, dir, runs }: SetRun, megabytes: number): Promise<ComparisonResult> {
  const skopeoPull = set.refs.map((ref) =>
    `skopeo copy -q --src-tls-verify=false docker://${ref} "oci:$1:${ref}"`
  )
    .join(" && ");
  return compare(set.name, "fetch", megabytes, [
    {
      name: "berth pull",
      run: (round) => timed(berth("--store", `${dir}/pull-${round}`, "pull", ...set.refs)),
      reset: (round) => Deno.remove(`${dir}/pull-${round}`, { recursive: true }),
    },
    {
      name: "skopeo copy",
      run: async (round) => {
        await Deno.mkdir(`${dir}/skopeo-${round}`);
        return await timed(["bash", "-c", skopeoPull, "bench", `${dir}/skopeo-${round}`]);
      },
      reset: (round) => Deno.remove(`${dir}/skopeo-${round}`, { recursive: true }),
    },
  ], runs);
}

/** 2. restore (store → emptied engine), and 4. the cost of `sync -f` of the engine's data root alone. */
async function restoreComparisons(
  setRun: SetRun,
  store: string,
  megabytes: number,
): Promise<ComparisonResult[]> {
  const { set, dir, engine, runs } = setRun;
  const archive = `${dir}/images.tar`;
  // The archive docker load reads: `docker save` of the very images, as the engine holds them.
  await run(berth("--store", store, "--docker-host", engine.host, "load", ...set.refs));
  await run(["docker", "-H", engine.host, "save", "-o", archive, ...set.refs]);
  await emptyEngine(engine);
  const skopeoLoad = set.refs.map((ref) =>
    `skopeo copy -q --dest-daemon-host ${engine.host} "oci:${store}:${ref}" "docker-daemon:${ref}"`
  ).join(" && ");
  const empty = () => emptyEngine(engine);
  const restore = await compare(set.name, "restore", megabytes, [
    {
      name: "berth load",
      run: () => timed(berth("--store", store, "--docker-host", engine.host, "load", ...set.refs)),
      reset: empty,
    },
    { name: "skopeo oci→daemon", run: () => timed(["bash", "-c", skopeoLoad]), reset: empty },
    {
      name: "docker load",
      run: () => timed(["docker", "-H", engine.host, "load", "-q", "-i", archive]),
      reset: empty,
    },
  ], runs);
  const sync = await compare(set.name, "sync -f after docker load", 0, [{
    name: "sync -f data root",
    run: async () => {
      await run(["docker", "-H", engine.host, "load", "-q", "-i", archive]);
      return await timed(["sync", "-f", engine.dataRoot]);
    },
    reset: empty,
  }], runs);
  await Deno.remove(archive);
  return [restore, sync];
}

/** 3. fetch + install of an app of the set's images vs concurrent docker pulls of them. */
async function appComparison(
  { set, dir, engine, runs }: SetRun,
  megabytes: number,
): Promise<ComparisonResult> {
  const project = `${dir}/project`;
  await Deno.mkdir(project);
  const services = set.refs.map((ref, index) => `  s${index}:\n    image: ${ref}\n    network_mode: none`);
  await Deno.writeTextFile(`${project}/docker-compose.yml`, ["services:", ...services, ""].join("\n"));
  const registry = set.refs[0].slice(0, set.refs[0].indexOf("/"));
  const appRef = `${registry}/bench/app-${set.name.toLowerCase()}:1`;
  await run(berth("publish", project, appRef));
  const device = (round: number) => [`${dir}/device-store-${round}`, `${dir}/device-apps-${round}`];
  return await compare(set.name, "fetch + install", megabytes, [
    {
      name: "berth install --pull",
      run: (round) =>
        timed([
          "bash",
          "-c",
          berthFetchAndInstall(appRef, ...device(round) as [string, string], engine.host),
        ]),
      reset: async (round) => {
        await emptyEngine(engine);
        for (const path of device(round)) await Deno.remove(path, { recursive: true });
      },
    },
    {
      name: "docker pull ×N concurrent",
      run: () => timed(["bash", "-c", concurrentDockerPulls(set.refs, engine.host)]),
      reset: () => emptyEngine(engine),
    },
  ], runs);
}
